"""Every `edgeseg ...` line in README.md's shell blocks names a command that exists and only
options that command shows in --help (no hidden, deprecated alias): the README stays runnable
as the flags change. Lines are read the way CommonMark renders them (markdown-it-py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from markdown_it import MarkdownIt

from edgeseg.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
SHELLS = {"", "bash", "sh", "shell", "console"}


def readme_commands() -> list[str]:
    """`edgeseg ...` command lines of the README's shell code blocks (continuations joined)."""
    lines: list[str] = []
    for tok in MarkdownIt("commonmark").parse(README.read_text()):
        if tok.type != "fence" or tok.info.strip() not in SHELLS:
            continue
        joined = tok.content.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.strip().removeprefix("$ ")
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("edgeseg "):
                    # a command list ("edgeseg ros2    what it does"): the command alone
                    lines.append(re.split(r"\s{2,}| #", part, maxsplit=1)[0].strip())
    return lines


def _leaf(words: list[str]) -> tuple[object, list[str]]:
    cmd = typer.main.get_command(app)
    rest = words[1:]
    while rest and hasattr(cmd, "commands") and rest[0] in cmd.commands:  # type: ignore[attr-defined]
        cmd = cmd.commands[rest[0]]  # type: ignore[attr-defined]
        rest = rest[1:]
    return cmd, rest


COMMANDS = readme_commands()


def test_readme_has_commands() -> None:
    assert len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize("line", COMMANDS)
def test_readme_command_uses_shown_options_only(line: str) -> None:
    words = shlex.split(line)
    cmd, rest = _leaf(words)
    if hasattr(cmd, "commands"):  # a group named alone, in a command list
        assert not rest, f"{line}: {rest[0]} is not a subcommand"
        return
    shown = {opt for p in cmd.params if not getattr(p, "hidden", False)  # type: ignore[attr-defined]
             for opt in (*p.opts, *p.secondary_opts)}
    for word in rest:
        if re.match(r"--?[A-Za-z]", word):
            flag = word.split("=", 1)[0]
            assert flag in shown, f"{line}: {flag} is not an option of this command"
