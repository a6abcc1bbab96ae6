from voicechat.cli import main

main()
