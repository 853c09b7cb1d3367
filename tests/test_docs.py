"""Every command is documented in the README and has --help with an example."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from archiver.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands() -> list[list[str]]:
    click_app = typer.main.get_command(app)
    found = []
    for name, command in click_app.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found.extend([name, sub] for sub in subcommands)
        else:
            found.append([name])
    return found


def test_there_are_commands():
    assert {"run", "demo", "serve", "verify", "status", "init", "rebuild"} <= {c[0] for c in commands()}


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_command_is_documented_with_an_example(command):
    assert f"| `archiver {' '.join(command)}` |" in README
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example: archiver " + " ".join(command) in result.output


def long_options(command: click.Command) -> list[str]:
    return [o for p in command.params for o in getattr(p, "opts", []) if o.startswith("--") and o != "--help"]


def test_global_options_are_documented():
    options = long_options(typer.main.get_command(app))
    assert "--version" in options
    for option in options:
        assert f"`archiver {option}`" in README


@pytest.mark.parametrize("command", commands(), ids=" ".join)
def test_every_option_of_a_command_is_in_the_readme(command):
    click_command = typer.main.get_command(app)
    for name in command:
        click_command = click_command.commands[name]
    for option in long_options(click_command):
        assert re.search(re.escape(option) + r"\b", README), f"archiver {' '.join(command)} {option}"


def test_readme_starts_with_the_two_commands():
    blocks = README.split("```sh\n")
    assert blocks[1].startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e . && archiver demo")
    test_command = blocks[2].split("\n")[0]
    assert "pytest" in test_command
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert test_command in ci
