"""Help that reads like a manual: flags shown as flags, values by what they are, choices spelled out.

Typer prints every parameter's Python type (`<bool>`, `<str>`, `<list[str]>`, `{prompt}`); a user
needs to know what to type. `tidy_help` rewrites the metavars of the built command tree once.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperGroup, TyperOption

CHOICES: dict[str, str] = {
    "backend": "animatic|diffusion",
    "review": "none|rules|llm|human|aesthetic",
    "finetune": "auto|off|force",
    "preset": "paper|quick",
    "format": "pororo|flintstones",
    "method": "storyagent|dc|anydoor|animatic",
}
"""Options whose value is one of a few words, by parameter name."""


def _value_word(param: TyperOption) -> str:
    if param.name in CHOICES:
        return CHOICES[param.name]
    desc = param.type_descriptor
    if desc.is_choice and desc.choices:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    if desc.is_path or desc.is_file:
        return "PATH"
    base = desc.annotation
    word = {int: "N", float: "NUMBER"}.get(base, "TEXT")
    return word + ("..." if desc.is_list else "")


class _Argument(TyperArgument):
    """An argument whose type column shows nothing: its name in the usage line says it all."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def tidy_help(command: Any) -> Any:
    """Set a readable metavar on every parameter of `command` and its sub-commands; returns `command`."""
    for param in getattr(command, "params", []):
        if isinstance(param, TyperOption):
            param.metavar = "" if param.is_flag else (param.metavar or _value_word(param))
        elif isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.__class__ = _Argument
    make_help_option = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    if isinstance(command, TyperGroup):
        for sub in command.commands.values():
            tidy_help(sub)
    return command
