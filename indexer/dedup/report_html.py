"""A self-contained HTML page for a DedupReport: embedded thumbnails, groups side by side, scores,
sorting and filtering by score with a little inline JS. Opens offline (no external resources)."""
from __future__ import annotations

import base64
import html
import io
import json
import time

from PIL import Image, ImageOps

_CSS = """
body{font:14px system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}
header{position:sticky;top:0;background:#fafafa;padding:.5em 0;border-bottom:1px solid #ccc;z-index:1}
.group{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.8em 0;padding:.5em}
.group h3{margin:.2em 0 .4em;font-size:14px}
.files{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0;width:%(w)dpx;font-size:12px;word-break:break-all}
figure img,.noimg{width:%(w)dpx;height:%(w)dpx;object-fit:contain;background:#eee;display:block}
.noimg{display:flex;align-items:center;justify-content:center;color:#888}
.keep{outline:3px solid #2a7}
.dup{outline:3px solid #d63}
.score{font-weight:bold}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
"""

_JS = """
function apply(){
  var lo=parseFloat(document.getElementById('minscore').value), hi=parseFloat(document.getElementById('maxscore').value);
  var only=document.getElementById('kind').value, box=document.getElementById('groups');
  var gs=Array.prototype.slice.call(box.querySelectorAll('.group')), shown=0;
  gs.forEach(function(g){
    var s=parseFloat(g.dataset.min), ok=s>=lo && s<=hi && (only==='all' || g.dataset.kind===only);
    g.style.display=ok?'':'none'; if(ok) shown++;
  });
  var key=document.getElementById('sort').value;
  gs.sort(function(a,b){
    if(key==='score-asc') return a.dataset.min-b.dataset.min;
    if(key==='score-desc') return b.dataset.min-a.dataset.min;
    if(key==='size-desc') return b.dataset.n-a.dataset.n;
    return b.dataset.bytes-a.dataset.bytes;
  });
  gs.forEach(function(g){box.appendChild(g);});
  document.getElementById('shown').textContent=shown;
}
"""


def thumbnail_uri(path: str, size: int = 160) -> str | None:
    """A small JPEG of ``path`` as a data: URI, or None when the file can't be read."""
    try:
        with Image.open(path) as im:
            im.draft("RGB", (size * 2, size * 2))
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
    except Exception:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(m, role: str, thumb: int) -> str:
    uri = thumbnail_uri(m.path, thumb)
    cls = "keep" if role == "keep" else "dup"
    img = f'<img class="{cls}" src="{uri}" alt="">' if uri else f'<div class="noimg {cls}">unreadable now</div>'
    score = "" if role == "keep" else f'<span class="score">{m.score:.3f}</span> '
    return (f'<figure>{img}'
            f'<figcaption><b>{"KEEP" if role == "keep" else "duplicate"}</b> {score}<br>'
            f'{html.escape(m.reason)}<br>{m.width}x{m.height}, {m.size / 1024:.0f} KiB, '
            f'{time.strftime("%Y-%m-%d %H:%M", time.localtime(m.mtime_ns / 1e9))}<br>'
            f'<span title="{html.escape(m.path)}">{html.escape(m.path)}</span></figcaption></figure>')


def render(report, max_groups: int = 2000, thumb: int = 160) -> str:
    e = html.escape
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.created_at))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Duplicates - {e(report.index_dir)}</title>",
             f"<style>{_CSS % {'w': thumb}}</style><script>{_JS}</script></head><body>",
             "<header>",
             f"<h2>Duplicates in {e(report.index_dir)}</h2>",
             f"<p><b>Duplicates: {e(report.rule_text).replace('&gt;=', '&ge;')}</b> &middot; {e(report.counts())} &middot; "
             f"created {created}</p>",
             "<p>Show groups with lowest score between <input id='minscore' type='number' step='0.01' min='-1' "
             "max='1' value='-1' oninput='apply()'> and <input id='maxscore' type='number' step='0.01' min='-1' "
             "max='1' value='1' oninput='apply()'> &middot; kind <select id='kind' onchange='apply()'>"
             "<option value='all'>all</option><option value='exact'>exact copies only</option>"
             "<option value='near'>with near duplicates</option></select> &middot; sort by <select id='sort' "
             "onchange='apply()'><option value='score-asc'>lowest score first</option><option value='score-desc'>"
             "highest score first</option><option value='size-desc'>most files first</option><option "
             "value='bytes-desc'>most bytes first</option></select> &middot; <span id='shown'>"
             f"{min(len(report.groups), max_groups)}</span> groups shown</p>",
             "</header>"]
    if len(report.groups) > max_groups:
        parts.append(f"<p><b>Only the first {max_groups} of {len(report.groups)} groups are in this page</b> "
                     "(see the CSV/JSON for all).</p>")
    parts.append("<div id='groups'>")
    for n, g in enumerate(report.groups[:max_groups], 1):
        kind = "exact" if all(m.reason.startswith("exact") for m in g.members) else "near"
        parts.append(f"<section class='group' data-min='{g.min_score:.6f}' data-n='{len(g.files)}' "
                     f"data-bytes='{g.reclaimable_bytes}' data-kind='{kind}'>"
                     f"<h3>Group {n}: {len(g.members)} duplicate(s) of {e(g.keeper.path)} &middot; lowest score "
                     f"{g.min_score:.3f} &middot; {g.reclaimable_bytes / 1e6:.2f} MB</h3><div class='files'>")
        parts.append(_figure(g.keeper, "keep", thumb))
        parts += [_figure(m, "dup", thumb) for m in g.members]
        parts.append("</div></section>")
    parts.append("</div>")
    if report.errors:
        parts.append(f"<h2>Unreadable files ({len(report.errors)})</h2><table><tr><th>file</th><th>reason</th></tr>")
        parts += [f"<tr><td>{e(x['path'])}</td><td>{e(x['reason'])}</td></tr>" for x in report.errors]
        parts.append("</table>")
    stats = json.dumps(report.stats, indent=1, default=str)
    parts.append(f"<details><summary>How this report was made</summary><pre>{e(stats)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)
