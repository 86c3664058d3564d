"""A self-contained HTML page for a DedupReport: embedded thumbnails (a click opens a larger view,
also embedded), groups side by side with their kind (duplicates / similar shots) and why, scores,
the keeper's reason, sorting and filtering with a little inline JS, and the command that applies
the report. Opens offline (no external resources)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shlex
import time
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageOps

LARGE_GROUPS = 500  # groups whose pictures get an embedded larger view (640 px)

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
.sim{outline:3px dashed #68a}
.similar{background:#f4f7fb}
figure img{cursor:zoom-in}
#big{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);z-index:9;align-items:center;
 justify-content:center;flex-direction:column;color:#eee;cursor:zoom-out}
#big img{max-width:95vw;max-height:88vh;object-fit:contain;background:#333}
code{background:#eee;padding:2px 4px;user-select:all}
.score{font-weight:bold}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
"""

_JS = """
function big(el){
  var b=document.getElementById('big');
  document.getElementById('bigimg').src=el.dataset.large||el.src;
  document.getElementById('bigcap').textContent=el.dataset.path||'';
  b.style.display='flex';
}
function unbig(){document.getElementById('big').style.display='none';}
document.addEventListener('keydown',function(e){if(e.key==='Escape') unbig();});
function apply(){
  var lo=parseFloat(document.getElementById('minscore').value), hi=parseFloat(document.getElementById('maxscore').value);
  var only=document.getElementById('kind').value, box=document.getElementById('groups');
  var gs=Array.prototype.slice.call(box.querySelectorAll('.group')), shown=0;
  gs.forEach(function(g){
    var k=g.dataset.kind, s=parseFloat(g.dataset.min);
    var ok=s>=lo && s<=hi && (only==='all' || k===only || (only==='duplicates' && g.dataset.dup==='1'));
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
    return thumbnail_uris(path, (size,))[0]


def thumbnail_uris(path: str, sizes) -> list:
    """``thumbnail_uri`` of ``path`` at each of ``sizes`` (largest first or not), from one decode."""
    try:
        with Image.open(path) as im:
            top = max(sizes)
            im.draft("RGB", (top, top))  # a JPEG decoded at the smallest scale still >= top
            im.thumbnail((top, top))  # (turned after: fewer pixels to turn)
            im = ImageOps.exif_transpose(im).convert("RGB")
        out = {}
        for size in sorted(set(sizes), reverse=True):  # each from the one above it
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=80)
            out[size] = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except Exception:
        return [None] * len(sizes)
    return [out[s] for s in sizes]


def _figure(m, role: str, thumb: int, large: int) -> str:
    uri, big = (
        thumbnail_uris(m.path, (thumb, large)) if large > thumb else (thumbnail_uri(m.path, thumb), None)
    )
    cls = {"keep": "keep", "similar": "sim"}.get(role, "dup")
    attrs = f' data-large="{big}"' if big else ""
    img = (
        f'<img class="{cls}" src="{uri}" alt="" onclick="big(this)" data-path="{html.escape(m.path)}"{attrs}>'
        if uri
        else f'<div class="noimg {cls}">unreadable now</div>'
    )
    score = "" if role == "keep" else f'<span class="score">{m.score:.3f}</span> '
    label = {"keep": "KEEP", "similar": "similar shot"}.get(role, "duplicate")
    return (
        f"<figure>{img}"
        f"<figcaption><b>{label}</b> {score}<br>"
        f"{html.escape(m.reason)}<br>{m.width}x{m.height}, {m.size / 1024:.0f} KiB, "
        f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(m.mtime_ns / 1e9))}<br>"
        f'<span title="{html.escape(m.path)}">{html.escape(m.path)}</span></figcaption></figure>'
    )


def apply_command(report, json_path=None) -> str:
    """The command that acts on this report (a dry run until --yes)."""
    target = str(json_path) if json_path else "REPORT.json"
    quarantine = os.path.join(
        os.path.dirname(os.path.abspath(target)) if json_path else ".", "dedup-quarantine"
    )
    return f"vgg-retrieval dedup apply {shlex.quote(target)} --move-to {shlex.quote(quarantine)}"


def _controls(shown: int) -> str:
    return (
        "<p>Show groups with lowest score between <input id='minscore' type='number' step='0.01' min='-1' "
        "max='1' value='-1' oninput='apply()'> and <input id='maxscore' type='number' step='0.01' min='-1' "
        "max='1' value='1' oninput='apply()'> &middot; kind <select id='kind' onchange='apply()'>"
        "<option value='all'>all</option><option value='duplicates'>duplicates (applied)</option>"
        "<option value='exact'>exact copies only</option><option value='similar'>similar shots (review)</option>"
        "</select> &middot; sort by <select id='sort' "
        "onchange='apply()'><option value='score-asc'>lowest score first</option><option value='score-desc'>"
        "highest score first</option><option value='size-desc'>most files first</option><option "
        "value='bytes-desc'>most bytes first</option></select> &middot; <span id='shown'>"
        f"{shown}</span> groups shown &middot; click a picture for a larger view</p>"
    )


def _group(n: int, g, thumb: int, large: int) -> str:
    e = html.escape
    exact = all(m.reason.startswith("exact") for m in g.members)
    kind = "similar" if not g.is_duplicates else ("exact" if exact else "duplicates")
    what = (
        f"{len(g.members)} similar shot(s) of" if kind == "similar" else f"{len(g.members)} duplicate(s) of"
    )
    size = "" if kind == "similar" else f" &middot; {g.reclaimable_bytes / 1e6:.2f} MB"
    parts = [
        f"<section class='group{' similar' if kind == 'similar' else ''}' data-min='{g.min_score:.6f}' "
        f"data-n='{len(g.files)}' data-bytes='{g.reclaimable_bytes}' data-kind='{kind}' "
        f"data-dup='{int(g.is_duplicates)}'>"
        f"<h3>Group {n} ({'similar shots, review only' if kind == 'similar' else 'duplicates'}): {what} "
        f"{e(g.keeper.path)} &middot; lowest score {g.min_score:.3f}{size}</h3>"
        f"<p>{e(g.why)}{'<br>Kept: ' + e(g.keeper_reason) if g.keeper_reason else ''}</p><div class='files'>",
        _figure(g.keeper, "keep", thumb, large),
    ]
    parts += [_figure(m, "dup" if g.is_duplicates else "similar", thumb, large) for m in g.members]
    parts.append("</div></section>")
    return "".join(parts)


def render(report, max_groups: int = 2000, thumb: int = 160, large: int = 640, json_path=None) -> str:
    e = html.escape
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(report.created_at))
    shown = min(len(report.groups), max_groups)
    command = apply_command(report, json_path)
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Duplicates - {e(report.index_dir)}</title>",
        f"<style>{_CSS % {'w': thumb}}</style><script>{_JS}</script></head><body>",
        "<div id='big' onclick='unbig()'><img id='bigimg' alt=''><p id='bigcap'></p></div>",
        "<header>",
        f"<h2>Duplicates in {e(report.index_dir)}</h2>",
        f"<p><b>Duplicates: {e(report.rule_text).replace('&gt;=', '&ge;')}</b> &middot; {e(report.counts())} &middot; "
        f"created {created}</p>",
        f"<p>To quarantine the {report.duplicate_count} duplicate files (the similar shots are left alone; "
        f"a dry run until you add <code>--yes</code>; undo with <code>vgg-retrieval dedup undo LOG</code>): "
        f"<code id='applycmd'>{e(command)}</code></p>",
        _controls(shown),
        "</header>",
    ]
    if len(report.groups) > max_groups:
        parts.append(
            f"<p><b>Only the first {max_groups} of {len(report.groups)} groups are in this page</b> "
            "(see the CSV/JSON for all).</p>"
        )
    parts.append("<div id='groups'>")
    # larger views are embedded for the first groups only, so the page stays a reasonable size
    with ThreadPoolExecutor(2) as threads:  # Pillow decodes and scales without the GIL
        parts += threads.map(
            lambda ng: _group(ng[0], ng[1], thumb, large if ng[0] <= LARGE_GROUPS else 0),
            enumerate(report.groups[:max_groups], 1),
        )
    parts.append("</div>")
    if report.errors:
        parts.append(
            f"<h2>Unreadable files ({len(report.errors)})</h2><table><tr><th>file</th><th>reason</th></tr>"
        )
        parts += [f"<tr><td>{e(x['path'])}</td><td>{e(x['reason'])}</td></tr>" for x in report.errors]
        parts.append("</table>")
    stats = json.dumps(report.stats, indent=1, default=str)
    parts.append(f"<details><summary>How this report was made</summary><pre>{e(stats)}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)
