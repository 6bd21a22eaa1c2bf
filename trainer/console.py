"""The one console and the one error wrapper every `ma-train` verb uses."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True)

#: What a user can fix (a bad setting, a missing file or package, a failed conversion): one red
#: line and exit code 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, FileNotFoundError, ImportError, RuntimeError)


def friendly(func):
    """Show a user error as `error: ...` on one line and exit 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            console.print(f"[red]error:[/red] {escape(str(err))}", soft_wrap=True)
            raise typer.Exit(2) from err

    return wrapper


def show_table(title: str, rows: list[tuple], headers: tuple[str, ...]) -> None:
    table = Table(title=title)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    console.print(table)
