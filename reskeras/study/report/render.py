"""Rendering the report's blocks as Markdown (``report.md``) and one HTML page (``report.html``).

Blocks: ``("h1" | "h2" | "p" | "meta" | "answer", text)``, ``("list", items)``,
``("table", header, rows[, wrapping column indices])``, ``("figure", path,
caption)``, ``("code", text)``. Text may hold Markdown's `code`, **bold** and
*italic*; the HTML escapes everything else and inlines its CSS, so the page opens
offline as one file (the figures are embedded by the caller's ``images``).

>>> print(render_markdown([("h2", "Cells"), ("table", ["a", "b"], [["1", "2"]])]), end="")
## Cells
<BLANKLINE>
| a | b |
| --- | --- |
| 1 | 2 |
"""

from __future__ import annotations

import base64
import html
import re

CSS = """
body{font-family:system-ui,sans-serif;color:#1d2330;margin:0;background:#f6f7f9;line-height:1.5}
main{max-width:1216px;margin:0 auto;padding:24px 32px;background:#fff}
h2{border-bottom:2px solid #e3e6ea;padding-bottom:.2em;margin-top:1.8em}.meta{color:#5a6270}
.answer{background:#eef5ff;border-left:6px solid #2f6fdb;padding:14px 18px;font-size:1.1em}
.table{overflow-x:auto}table{border-collapse:collapse;font-size:.9em;margin:.6em 0}
th,td{border:1px solid #d5d9df;padding:4px 7px;text-align:left;white-space:nowrap}
td{vertical-align:top}
th{white-space:normal;vertical-align:bottom}td:first-child{white-space:normal;min-width:9.5em}
th{background:#f0f2f5}tr:nth-child(even) td{background:#fafbfc}figure{margin:1em 0}
td.wrap{white-space:normal;min-width:6em}
img{max-width:100%;height:auto;border:1px solid #e3e6ea}figcaption{color:#5a6270;font-size:.9em}
code{background:#f0f2f5;padding:0 3px}pre{background:#f0f2f5;padding:12px;overflow-x:auto}
"""


def md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"


def _checked(header: list, rows: list) -> list:
    """The rows, each as long as the header (a short or long row is a bug in its writer)."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"A report table row must have one cell per column "
                             f"({len(header)}: {header}). Received: {len(row)} cells {row}")
    return rows


def render_markdown(blocks: list[tuple]) -> str:
    """The blocks as Markdown; figures as ``![caption](relative path)``."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + rest[0])
        elif kind in ("p", "meta"):
            out.append(rest[0])
        elif kind == "answer":
            out.append(f"> **Answer.** {rest[0]}")
        elif kind == "list":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            out.append("\n".join([md_row(rest[0]), "|" + " --- |" * len(rest[0])]
                                 + [md_row(row) for row in _checked(*rest[:2])]))
        elif kind == "figure":
            out.append(f"![{rest[0].rsplit('/', 1)[-1][:-4]}]({rest[0]})\n\n*{rest[1]}*")
        elif kind == "code":
            out.append(f"```bash\n{rest[0]}\n```")
    return "\n\n".join(out) + "\n"


def inline(text: str) -> str:
    """Escaped HTML with Markdown's `code`, **bold** and *italic*."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", text)


def render_html(blocks: list[tuple], images: dict[str, bytes], title: str) -> str:
    """The blocks as one HTML page; ``images`` maps a figure path to its PNG bytes."""
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{inline(rest[0])}</{kind}>")
        elif kind in ("p", "meta", "answer"):
            css = {"p": "", "meta": ' class="meta"', "answer": ' class="answer"'}[kind]
            lead = "<strong>Answer.</strong> " if kind == "answer" else ""
            out.append(f"<p{css}>{lead}{inline(rest[0])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{inline(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":  # long text columns (rest[2]) wrap, so the table fits 1280 px
            head = "".join(f"<th>{inline(h)}</th>" for h in rest[0])
            wrap = set(rest[2]) if len(rest) > 2 else set()
            body = "".join("<tr>" + "".join(
                ('<td class="wrap">' if i in wrap else "<td>") + f"{inline(c)}</td>"
                for i, c in enumerate(row)) + "</tr>" for row in _checked(*rest[:2]))
            out.append(f'<div class="table"><table><thead><tr>{head}</tr></thead>'
                       f"<tbody>{body}</tbody></table></div>")
        elif kind == "figure":
            data = base64.b64encode(images[rest[0]]).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" '
                       f'alt="{html.escape(rest[1])}"><figcaption>{inline(rest[1])}'
                       "</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre><code>{html.escape(rest[0])}</code></pre>")
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            "<main>\n" + "\n".join(out) + "\n</main>\n</body>\n</html>\n")
