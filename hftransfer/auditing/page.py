"""``audit.html``: one self-contained page (inline styles, images as data URIs, an SVG chart, no script) a person
scans: leaks and duplicates side by side, each likely label error beside its nearest neighbours and their labels,
outliers beside theirs, and the class balance as a chart."""

from __future__ import annotations

import base64
import html
import io

from hftransfer.auditing.examples import PooledExamples
from hftransfer.data.images import open_image, to_mode
from hftransfer.data.source_ids import id_of, split_of

SHOWN = 40  # suspects per section: the page is for reading; the JSON holds them all
THUMBNAIL = 112
TEXT_CHARS = 280
STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1d1d1f;background:#fafafa}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.summary td{padding:2px 12px 2px 0}.card{display:flex;gap:12px;align-items:flex-start;background:#fff;
border:1px solid #e3e3e3;border-radius:6px;padding:10px;margin:8px 0}.item{width:150px;font-size:12px}
.item img{width:112px;height:112px;object-fit:contain;background:#eee;display:block}
.text .item{width:260px}
.item .meta{word-break:break-all}.main{border-left:3px solid #d33;padding-left:8px}.meta{font-size:12px;color:#555}
.badge{display:inline-block;background:#d33;color:#fff;border-radius:3px;padding:0 4px;font-size:11px}
.ok{background:#2a7}.label{font-weight:600}.quote{white-space:pre-wrap;word-break:break-word}
"""


def render(found: dict, examples: PooledExamples) -> str:
    view = _Views(examples)
    meta = found["meta"]
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>hftransfer audit</title>"
        f"<style>{STYLE}</style></head><body class='{examples.modality}'>",
        f"<h1>hftransfer audit · {html.escape(str(meta['backbone']))}</h1>",
        f"<p class='meta'>{meta['date']} · {meta['examples']} examples · {meta['seconds']} s</p>",
        _summary(found),
        _pairs(found["duplicates"], view),
        _suspects("Likely label errors", found["label_issues"], found, view, _issue_caption),
        _suspects("Outliers", found["outliers"], found, view, lambda r: f"distance {r['score']:.3f}"),
        _balance(found),
        "</body></html>",
    ]
    return "\n".join(parts)


class _Views:
    """How an example reads on the page (thumbnails made once, only for the examples shown)."""

    def __init__(self, examples: PooledExamples):
        self.examples, self.cache = examples, {}

    def item(self, row: int, caption: str, main: bool = False) -> str:
        source = self.examples.sources[row]
        where = f"{html.escape(split_of(source))}:{html.escape(id_of(source))}"
        body = self.body(row)
        return (
            f"<div class='item{' main' if main else ''}'>{body}<div class='meta'>{where}</div>"
            f"<div>{caption}</div></div>"
        )

    def body(self, row: int) -> str:
        if row not in self.cache:
            value = self.examples.shown[row]
            if self.examples.modality == "text":
                text = value if len(value) <= TEXT_CHARS else value[:TEXT_CHARS] + "…"
                self.cache[row] = f"<div class='quote'>{html.escape(text)}</div>"
            else:
                self.cache[row] = f"<img alt='example {row}' src='{thumbnail(value)}'>"
        return self.cache[row]

    def label(self, row: int, names: list[str]) -> str:
        value = self.examples.labels[row]
        if getattr(value, "ndim", 0):
            return ", ".join(names[i] for i, v in enumerate(value) if v > 0.5) or "(none)"
        return names[int(value)]


def thumbnail(value) -> str:
    """A JPEG data URI of the image, at most THUMBNAIL pixels a side."""
    image = to_mode(open_image(value), 3)
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _summary(found: dict) -> str:
    leaks = [r for r in found["duplicates"] if r["a"]["split"] != r["b"]["split"]]
    rows = [
        ("leaks across splits", f"{len(leaks)} ({sum(r['exact'] for r in leaks)} exact)"),
        ("duplicates inside a split", str(len(found["duplicates"]) - len(leaks))),
        ("likely label errors", str(len(found["label_issues"]))),
        ("outliers", str(len(found["outliers"]))),
        ("imbalance ratio (train)", str(found["imbalance_ratio"] or "n/a")),
        ("classes too small to validate", ", ".join(map(html.escape, found["too_small_to_validate"])) or "none"),
    ]
    cells = "".join(f"<tr><td>{name}</td><td><b>{value}</b></td></tr>" for name, value in rows)
    return f"<table class='summary'>{cells}</table>"


def _pairs(records: list[dict], view: _Views) -> str:
    cards = []
    for record in records[:SHOWN]:
        a, b = record["rows"]
        leak = record["a"]["split"] != record["b"]["split"]
        badge = f"<span class='badge{'' if leak else ' ok'}'>{'leak' if leak else 'same split'}</span>"
        kind = "exact" if record["exact"] else f"similarity {record['similarity']:.3f}"
        cards.append(f"<div class='card'>{view.item(a, badge, True)}{view.item(b, kind)}</div>")
    return _section("Leaks and duplicates", cards, len(records))


def _issue_caption(record: dict) -> str:
    given, suggested = (", ".join(v) if isinstance(v, list) else v for v in (record["given"], record["suggested"]))
    return (
        f"given <span class='label'>{html.escape(given)}</span> → suggested "
        f"<span class='label'>{html.escape(suggested)}</span> · score {record['score']:.3f}"
    )


def _suspects(title: str, records: list[dict], found: dict, view: _Views, caption) -> str:
    names = list(next(iter(found["class_counts"].values()), {}))
    cards = []
    for record in records[:SHOWN]:
        (row,) = record["rows"]
        around = found["neighbours"].index[row][:4]
        similar = found["neighbours"].similarity[row][:4]
        items = [view.item(row, caption(record), True)]
        items += [
            view.item(int(n), f"{html.escape(view.label(int(n), names))} · {s:.2f}") for n, s in zip(around, similar)
        ]
        cards.append(f"<div class='card'>{''.join(items)}</div>")
    return _section(title, cards, len(records), "each beside its nearest neighbours: label · similarity")


def _section(title: str, cards: list[str], total: int, note: str = "") -> str:
    shown = f"the first {len(cards)} of {total}" if total > len(cards) else f"{total}"
    extra = f" · {note}" if note and cards else ""
    return f"<h2>{title}</h2><p class='meta'>{shown}{extra}</p>" + ("".join(cards) or "<p>none found</p>")


def _balance(found: dict) -> str:
    counts = found["class_counts"]
    names = list(next(iter(counts.values()), {}))
    splits = list(counts)
    most = max((n for split in counts.values() for n in split.values()), default=1) or 1
    colours = {"train": "#4a7bd0", "validation": "#e39b2b", "test": "#2a9d6b"}
    bar, width, label_width = 14, 420, 180
    height = len(names) * (bar * len(splits) + 8) + 30
    shapes, y = [], 20
    for name in names:
        shapes.append(f"<text x='0' y='{y + bar}' font-size='12'>{html.escape(name[:28])}</text>")
        for split in splits:
            n = counts[split].get(name, 0)
            length = width * n / most
            shapes.append(
                f"<rect x='{label_width}' y='{y}' width='{length:.1f}' height='{bar - 2}' "
                f"fill='{colours.get(split, '#888')}'><title>{html.escape(name)} · {split}: {n}</title></rect>"
                f"<text x='{label_width + length + 4:.1f}' y='{y + bar - 3}' font-size='11'>{n}</text>"
            )
            y += bar
        y += 8
    legend = "".join(
        f"<rect x='{label_width + 90 * i}' y='0' width='10' height='10' fill='{colours.get(s, '#888')}'/>"
        f"<text x='{label_width + 90 * i + 14}' y='10' font-size='11'>{s}</text>"
        for i, s in enumerate(splits)
    )
    svg = (
        f"<svg role='img' aria-label='examples per class and split' width='{label_width + width + 60}' "
        f"height='{height}' xmlns='http://www.w3.org/2000/svg'>{legend}{''.join(shapes)}</svg>"
    )
    return f"<h2>Class balance</h2><p class='meta'>examples per class and split</p>{svg}"
