"""A calculator that never evaluates code: the expression is parsed, and only numbers, arithmetic
operators, a few named functions and constants are walked; anything else is refused.

Every step is bounded before it is computed (integers of at most MAX_INT_BITS, rounding to at most
MAX_ROUND_DIGITS places), and a result that is not a finite number is said as such, not as inf or
nan. The box runs it in a worker process all the same (see voicechat.tools.worker), so a step no
bound foresaw still ends at the deadline."""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from voicechat.engines.base import ToolSpec
from voicechat.tools.base import Tool, ToolError

MAX_CHARS = 200
MAX_DEPTH = 40
MAX_INT_BITS = 4096  # bigger integers are refused, not computed
MAX_ROUND_DIGITS = 1300  # round(x, n) with |n| beyond this: an int would be rounded to 10**|n| (4096 bits is < 10**1234)

SPEC = ToolSpec(
    "calculator",
    "Work out an arithmetic expression exactly. Numbers, + - * / // % ** (or ^), parentheses, "
    "sqrt, sin, cos, tan, log, log10, exp, abs, round, pi, e.",
    {
        "type": "object",
        "properties": {"expression": {"type": "string", "maxLength": MAX_CHARS, "description": "e.g. (3 + 4) * 2.5"}},
        "required": ["expression"],
        "additionalProperties": False,
    },
)

BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "log": math.log,
    "log10": math.log10,
    "exp": math.exp,
    "abs": abs,
    "round": round,
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def evaluate(expression: str) -> int | float:
    if len(expression) > MAX_CHARS:
        raise ToolError(f"the expression is {len(expression)} characters long; at most {MAX_CHARS}")
    # people write 2^3 for a power (and Python's ^ would bind looser than +)
    text = expression.replace("×", "*").replace("÷", "/").replace("−", "-").replace("^", "**")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        raise ToolError(f"'{expression[:60]}' is not an arithmetic expression") from None
    try:
        return _walk(tree.body, 0)
    except ZeroDivisionError:
        raise ToolError("division by zero") from None
    except OverflowError:
        raise ToolError("the result is too large") from None
    except (ValueError, TypeError) as e:  # sqrt(-1), log(0), round(1, 2, 3)
        raise ToolError(f"cannot compute that: {e}") from None


def _walk(node: ast.AST, depth: int) -> int | float:
    if depth > MAX_DEPTH:
        raise ToolError("the expression is nested too deeply")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)  # 1e999 is read as inf
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_walk(node.operand, depth + 1))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _walk(node.left, depth + 1), _walk(node.right, depth + 1)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _bounded(BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Name) and node.id in CONSTANTS:
        return CONSTANTS[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords:
        args = [_walk(a, depth + 1) for a in node.args]
        if node.func.id == "round":
            _check_round(args)
        return _bounded(FUNCTIONS[node.func.id](*args))
    what = node.id if isinstance(node, ast.Name) else type(node).__name__
    raise ToolError(f"'{what}' is not allowed in a calculation; use numbers, operators and {', '.join(FUNCTIONS)}")


def _check_power(base: int | float, exponent: int | float) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if abs(base).bit_length() * exponent > MAX_INT_BITS:
            raise ToolError("the result is too large")


def _check_round(args: list[int | float]) -> None:
    """round(1, -10**8) would build 10**(10**8) first: minutes in one C call."""
    if len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_ROUND_DIGITS:
        raise ToolError(f"round() takes at most {MAX_ROUND_DIGITS} digits either side of the point")


def _bounded(value: Any) -> int | float:
    if isinstance(value, complex):
        raise ToolError("the result is not a real number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("the result is too large")
    if isinstance(value, float) and math.isinf(value):
        raise ToolError("the result is too large" if value > 0 else "the result is too large (negative)")
    if isinstance(value, float) and math.isnan(value):
        raise ToolError("the result is not a number (for example infinity minus infinity)")
    return value


def format_number(value: int | float) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.12g}"
    return str(value)


def run(args: dict[str, Any]) -> str:
    return f"{args['expression']} = {format_number(evaluate(args['expression']))}"


def tool() -> Tool:
    return Tool(SPEC, run, worker=f"{__name__}:run")
