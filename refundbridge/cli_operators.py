"""`refundbridge operators`: the console's accounts.

A password is never an argument (it would sit in the shell's history and in `ps`): it is
read from `--password-file`, from standard input when that is not a terminal, or asked for
twice at the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from refundbridge.cli_options import ConfigOption
from refundbridge.core.access import OperatorRole
from refundbridge.core.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from refundbridge.store.operators import SqlOperatorDirectory

operators_app = typer.Typer(help="Console operators: add, list, disable, reset a password.",
                            no_args_is_help=True)

PasswordFile = Annotated[Path | None, typer.Option(
    "--password-file", exists=True, dir_okay=False, readable=True,
    help="read the password from this file's first line (default: standard input)")]


def _directory(config: Path | None) -> tuple[SqlOperatorDirectory, list[str]]:
    from refundbridge.cli import _check_services, _settings
    from refundbridge.store.db import make_engine
    from refundbridge.store.operators import SqlOperatorDirectory

    settings = _settings(config)
    _check_services(settings, redis=False)
    return SqlOperatorDirectory(make_engine(settings.database_url)), sorted(settings.shops)


def _password(password_file: Path | None) -> str:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    if sys.stdin.isatty():
        return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    return sys.stdin.readline().rstrip("\r\n")


def _fail(exc: Exception) -> None:
    typer.secho(str(exc), fg="red", err=True)
    raise typer.Exit(2) from exc




@operators_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="the login name")],
    role: Annotated[OperatorRole, typer.Option("--role", help="what the operator may do")],
    shop: Annotated[list[str] | None, typer.Option(
        "--shop", help="a shop the operator works for (repeat for several; an admin has "
                       "every shop)")] = None,
    password_file: PasswordFile = None,
    config: ConfigOption = None,
) -> None:
    """Add an operator."""
    directory, shops = _directory(config)
    unknown = sorted(set(shop or []) - set(shops))
    if unknown:
        _fail(InvalidRequest("shop", f"no shop {', '.join(unknown)} in the settings "
                                     f"(known: {', '.join(shops) or 'none'})"))
    try:
        directory.add(name, role, shop or [], _password(password_file))
    except InvalidRequest as exc:
        _fail(exc)
    typer.echo(f"added {role.value} {name}"
               + (f" for {', '.join(sorted(set(shop or [])))}" if shop else ""))


@operators_app.command("list")
def list_operators(
    config: ConfigOption = None,
) -> None:
    """Every operator, their role, shops and whether they may log in."""
    directory, _ = _directory(config)
    for account in directory.accounts():
        shops = "every shop" if account.role is OperatorRole.ADMIN else ",".join(account.shops)
        status = (f"disabled {account.disabled_at:%Y-%m-%d %H:%M}" if account.disabled_at
                  else "active")
        typer.echo(f"{account.name}\t{account.role.value}\t{shops}\t{status}")


@operators_app.command("disable")
def disable(name: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Stop an operator logging in; their open sessions end at once."""
    _change(config, lambda d: d.disable(name), f"disabled {name}; their sessions have ended")


@operators_app.command("enable")
def enable(name: Annotated[str, typer.Argument()], config: ConfigOption = None) -> None:
    """Let a disabled operator log in again."""
    _change(config, lambda d: d.enable(name), f"enabled {name}")


def _change(config: Path | None, action: Callable[[SqlOperatorDirectory], None],
            done: str) -> None:
    directory, _ = _directory(config)
    try:
        action(directory)
    except NotFound as exc:
        _fail(exc)
    typer.echo(done)


@operators_app.command("reset-password")
def reset_password(
    name: Annotated[str, typer.Argument()],
    password_file: PasswordFile = None,
    config: ConfigOption = None,
) -> None:
    """Set a new password; the operator's open sessions end."""
    directory, _ = _directory(config)
    try:
        directory.reset_password(name, _password(password_file))
    except (NotFound, InvalidRequest) as exc:
        _fail(exc)
    typer.echo(f"new password set for {name}; their sessions have ended")
