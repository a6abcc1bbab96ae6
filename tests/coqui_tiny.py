"""Build a tiny randomly initialised Coqui VITS model on disk, loadable like any user's model."""

from __future__ import annotations

from pathlib import Path


def build(directory: Path) -> tuple[Path, Path]:
    import torch
    from TTS.config.shared_configs import BaseAudioConfig
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models import setup_model
    from TTS.tts.models.vits import VitsArgs

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = VitsConfig(
        use_phonemes=False,
        text_cleaner="basic_cleaners",
        characters=CharactersConfig(
            characters_class="TTS.tts.models.vits.VitsCharacters",
            characters="abcdefghijklmnopqrstuvwxyz",
            punctuations="!'(),-.:;? ",
            pad="<PAD>",
            eos="<EOS>",
            bos="<BOS>",
            blank="<BLNK>",
        ),
        audio=BaseAudioConfig(sample_rate=16000, fft_size=256, win_length=256, hop_length=64, num_mels=40),
        model_args=VitsArgs(
            hidden_channels=32,
            hidden_channels_ffn_text_encoder=64,
            num_heads_text_encoder=2,
            num_layers_text_encoder=1,
            kernel_size_text_encoder=3,
            resblock_type_decoder="2",
            resblock_kernel_sizes_decoder=[3],
            resblock_dilation_sizes_decoder=[[1, 3]],
            upsample_rates_decoder=[8, 8],
            upsample_initial_channel_decoder=32,
            upsample_kernel_sizes_decoder=[16, 16],
            num_layers_flow=1,
            num_layers_posterior_encoder=1,
            spec_segment_size=8,
            init_discriminator=False,
        ),
    )
    model = setup_model(config)
    checkpoint = directory / "model.pth"
    config_path = directory / "config.json"
    torch.save({"model": model.state_dict()}, checkpoint)
    config.save_json(str(config_path))
    return checkpoint, config_path
