"""A small folder of mixed documents (txt, md, html, pdf, nested, one broken) for tests.

The PDF is written by hand (a valid file with a real xref table and Helvetica text), so no PDF
writer library is needed.
"""

from __future__ import annotations

from pathlib import Path

TOPICS = ("assert", "assignment", "atom-identifiers", "augassign", "binary", "bitwise")


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(path: Path, pages: list[list[str]]) -> Path:
    """Write a PDF with one page per list of text lines."""
    objects: list[bytes] = []
    n_pages = len(pages)
    font_id = 3 + 2 * n_pages
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    for i, lines in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            (
                f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
                f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>"
            ).encode()
        )
        body = "BT /F1 11 Tf 14 TL 60 740 Td " + " ".join(
            f"({_pdf_escape(line)}) Tj T*" for line in lines
        )
        stream = body.encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode()
    path.write_bytes(bytes(out))
    return path


PDF_PAGES = [
    [
        "Glaciers form where snow accumulates faster than it melts over many years.",
        "The weight of new snow compresses older layers into dense glacial ice.",
        "Moving ice carves valleys into a characteristic U shape.",
    ],
    [
        "Meltwater from glaciers feeds rivers that supply drinking water to millions.",
        "Scientists measure glacier mass balance with stakes drilled into the ice.",
        "Retreating glaciers expose moraines made of rock debris.",
    ],
]

MARKDOWN = """---
title: Sourdough
---
# Sourdough bread

A sourdough **starter** is a culture of wild yeast and lactic acid bacteria kept in flour
and water. Bakers feed the starter daily so that it stays active.

## Baking

The dough rises slowly, often overnight, which gives the bread its sour taste. A hot
Dutch oven traps steam and helps the crust form. See [the guide](https://example.org) for times.

```python
print("code blocks are kept")
```
"""

HTML = """<!doctype html><html><head><title>Tides</title>
<style>body { color: red }</style><script>var secret = "not prose";</script></head>
<body><nav>Home | About</nav><h1>Ocean tides</h1>
<p>Tides are caused mainly by the gravitational pull of the Moon on the oceans.</p>
<p>Spring tides happen when the Sun and the Moon line up, and the tidal range is largest.
Neap tides occur when they are at right angles &amp; the range is smallest.</p>
</body></html>"""


def write_sample_docs(folder: Path, *, topics: tuple[str, ...] = TOPICS) -> Path:
    """Mixed documents under ``folder``; returns it. Includes one broken PDF and a hidden file."""
    from pydoc_data.topics import topics as pydoc_topics

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "python").mkdir(exist_ok=True)
    for topic in topics:
        (folder / "python" / f"{topic}.txt").write_text(pydoc_topics[topic], encoding="utf-8")
    (folder / "bread.md").write_text(MARKDOWN, encoding="utf-8")
    (folder / "tides.html").write_text(HTML, encoding="utf-8")
    make_pdf(folder / "glaciers.pdf", PDF_PAGES)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    (folder / ".hidden.txt").write_text("Hidden files are ignored entirely.", encoding="utf-8")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder
