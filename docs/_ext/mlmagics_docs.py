"""What the docs take from the code and the repository instead of copying it by hand (so it cannot drift).

Directives, each rendering what a user sees at the prompt:

    ```{magic-help} deploy          the help of %deploy: its docstring (what %deploy? shows) and its --help
    ```{magic-config}               the %config DeployMagics settings, with defaults and help
    ```{cli-help} service deploy    `mlmagics service deploy --help` (`serve` is the scoring server's)

And at the start of every build the benchmarks section is mirrored from benchmarks/ into
docs/benchmarks/ (generated, git-ignored): README.md becomes its page, each report in
benchmarks/results/ a page under it, so the README's relative links keep working.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parents[2]
WIDTH = "100"  # argparse wraps at $COLUMNS: fixed, so a build does not depend on the terminal


def _literal(text: str, language: str = "text") -> nodes.literal_block:
    block = nodes.literal_block(text, text)
    block["language"] = language
    return block


def _argparse_help(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = WIDTH
    return parser.format_help().rstrip()


class MagicHelp(SphinxDirective):
    """The help of one magic: what `%name?` and `%name --help` show (its parser's help, its docstring first)."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        from mlmagics.magics import DeployMagics

        name = self.arguments[0]
        kinds = [kind for kind, table in DeployMagics.magics.items() if name in table]
        if not kinds:
            raise self.error(f"DeployMagics has no magic {name!r}")
        method = getattr(DeployMagics, name)
        parser = getattr(method, "parser", None)  # every magic with arguments has one (mlmagics.magics._arguments)
        text = _argparse_help(parser) if parser is not None else inspect.cleandoc(method.__doc__ or "")
        if "line" not in kinds:
            text = text.replace(f"%{name}", f"%%{name}")
        return [_literal(text)]


class MagicConfig(SphinxDirective):
    """`%config DeployMagics`: one row per setting."""

    def run(self) -> list[nodes.Node]:
        from mlmagics.magics import DeployMagics

        rows = [["setting", "default", "what it does"]]
        for name, trait in sorted(DeployMagics.class_traits(config=True).items()):
            values = getattr(trait, "values", None)
            default = repr(trait.default_value) + (f" (one of {', '.join(map(repr, values))})" if values else "")
            rows.append([f"DeployMagics.{name}", default, trait.help])
        return [_table(rows, code_columns=(0, 1))]


def _table(rows: list[list[str]], code_columns: tuple[int, ...] = ()) -> nodes.table:
    """A table node: the first row is the header; `code_columns` of the other rows are set as code."""
    table, group = nodes.table(), nodes.tgroup(cols=len(rows[0]))
    group += [nodes.colspec(colwidth=1) for _ in rows[0]]
    head, body = nodes.thead(), nodes.tbody()
    for index, row in enumerate(rows):
        row_node = nodes.row()
        for column, text in enumerate(row):
            inline = nodes.literal(text, text) if index and column in code_columns else nodes.Text(text)
            row_node += nodes.entry("", nodes.paragraph("", "", inline))
        (body if index else head).append(row_node)
    group += [head, body]
    table += group
    return table


class CliHelp(SphinxDirective):
    """`mlmagics <words> --help`, from the CLI's own parser."""

    optional_arguments = 3
    option_spec = {"prog": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        from mlmagics.cli import build_parser

        words = self.arguments
        if words[:1] == ["serve"]:
            from mlmagics.serving.__main__ import parser as serve_parser

            return [_literal(_argparse_help(serve_parser(prog="mlmagics serve")))]
        parser = build_parser()
        for word in words:
            choices = next(
                (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)),  # noqa: SLF001
                {},
            )
            if word not in choices:
                raise self.error(f"`mlmagics {' '.join(words)}`: no command {word!r}")
            parser = choices[word]
        return [_literal(_argparse_help(parser))]


def mirror_benchmarks(app: Sphinx) -> None:
    """benchmarks/README.md and results/ into docs/benchmarks/, rewritten only when they changed (so Sphinx
    rebuilds only what did)."""
    source, target = ROOT / "benchmarks", Path(app.srcdir) / "benchmarks"
    wanted: dict[Path, bytes] = {}
    readme = (source / "README.md").read_text(encoding="utf-8")
    # the latest reports first, then the kept earlier ones, named by their file (their titles repeat)
    found = (p.relative_to(source / "results").with_suffix("") for p in (source / "results").rglob("*.md"))
    entries = []
    for report in sorted(found, key=lambda p: (len(p.parts), p)):
        page = f"results/{report.as_posix()}"
        entries.append(page if len(report.parts) == 1 else f"{report.parent}: {report.name} <{page}>")
    toctree = "\n".join(entries)
    wanted[target / "index.md"] = (
        f"{readme.rstrip()}\n\n## The reports\n\n```{{toctree}}\n:maxdepth: 1\n\n{toctree}\n```\n"
    ).encode()
    for path in (source / "results").rglob("*"):
        if path.is_file() and path.suffix in {".md", ".png", ".svg", ".csv"}:
            wanted[target / "results" / path.relative_to(source / "results")] = path.read_bytes()
    for path, content in wanted.items():
        if not path.exists() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    for path in [p for p in target.rglob("*") if p.is_file() and p not in wanted]:
        path.unlink()
    for folder in sorted((p for p in target.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            shutil.rmtree(folder)


def public_names(app: Sphinx, env, node, contnode):
    """A type hint naming a public class where it is defined (`mlmagics.core.models.Model`), or by a v1 alias
    (`ModelNotFoundException`), links to its documentation under the public name (`mlmagics.Model`)."""
    import mlmagics

    target = node.get("reftarget", "")
    name = target.rpartition(".")[2]
    if node.get("refdomain") != "py" or not target.startswith("mlmagics.") or name not in mlmagics.__all__:
        return None
    documented = f"mlmagics.{getattr(getattr(mlmagics, name), '__name__', name)}"
    if target == documented:
        return None
    return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode)


def drop_dataclass_repr(app: Sphinx, what: str, name: str, obj, options, lines: list[str]) -> None:
    """A dataclass with no docstring of its own gets its constructor's repr as one: not documentation."""
    if what == "class" and lines and lines[0].startswith(f"{getattr(obj, '__name__', '')}("):
        lines.clear()


def setup(app: Sphinx) -> dict:
    app.add_directive("magic-help", MagicHelp)
    app.add_directive("magic-config", MagicConfig)
    app.add_directive("cli-help", CliHelp)
    app.connect("builder-inited", mirror_benchmarks)
    app.connect("missing-reference", public_names)
    app.connect("autodoc-process-docstring", drop_dataclass_repr)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
