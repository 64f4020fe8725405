"""User strings printed through rich stay literal: a label with ``[abc]`` is not swallowed as markup."""

from __future__ import annotations

from rich.console import Console

from nflab.richtext import SafeTable, make_console, plain, styled


def _render(renderable: object, console: Console | None = None) -> str:
    console = console or Console(record=True, width=200)  # a default console: markup on
    console.print(renderable)
    return console.export_text()


def test_table_cells_title_and_headers_keep_brackets() -> None:
    table = SafeTable(title="campaign [abc]")
    table.add_column("model [x]")
    table.add_column("status")
    table.add_row("realnvp [abc]", plain("finished", "green"))
    table.add_row("realnvp [efd47265]", "[bold]not markup[/bold]")
    out = _render(table)
    for text in ("campaign [abc]", "model [x]", "realnvp [abc]", "realnvp [efd47265]", "[bold]not markup[/bold]"):
        assert text in out


def test_plain_rich_table_would_lose_the_label() -> None:
    """The failure mode the safe path prevents (guards the test above against a rich that stops parsing)."""
    from rich.table import Table

    table = Table()
    table.add_column("model")
    table.add_row("realnvp [abc]")
    assert "[abc]" not in _render(table)


def test_console_and_styled_messages_print_literally() -> None:
    console = make_console(record=True, width=200)
    console.print("error: model.hidden: [128, 128] is not [abc]")
    console.print(styled(("error:", "red"), " ", "[abc] stays"))
    out = console.export_text()
    assert "[128, 128] is not [abc]" in out
    assert "error: [abc] stays" in out
