"""The Duplicates page's compare view: a group's keeper and one of its files, large, side by side with
one synchronised zoom and pan (wheel, drag, Fit, 1:1), a flicker between the two, and the difference
image (``ui.logic.dedup_compare``: the file aligned to the keeper's frame). Shown in a large dialog,
where the user is; Esc or the X closes it."""

from __future__ import annotations

import base64
import os

import streamlit as st
import streamlit.components.v1 as components

from ui.logic import compare_images, member_row

from . import components as C
from .state import guard

COMPARE = "dd_compare"  # session state: (keeper Member, other Member, title) shown, or None
HEIGHT = 620


@st.cache_data(max_entries=32, show_spinner="Aligning the two pictures...")
def _comparison(_svc, keeper_key: tuple, other_key: tuple):
    return compare_images(_svc.open_row(_svc.row(keeper_key[0])), _svc.open_row(_svc.row(other_key[0])))


def _key(row) -> tuple:
    return (row.id, row.path, row.mtime_ns, row.size)


def _uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _dismissed() -> None:
    st.session_state[COMPARE] = None


@st.dialog("Compare", width="large", on_dismiss=_dismissed)
def compare_dialog(svc) -> None:
    with guard():
        shown = st.session_state.get(COMPARE)
        if shown:
            keeper, other, first = shown
            _body(svc, keeper, other, first)


def _body(svc, keeper, other, first: str) -> None:
    kr, orow = member_row(svc, keeper), member_row(svc, other)
    if kr is None or orow is None:
        st.warning("one of the two files is not in the index now")
        return
    c = _comparison(svc, _key(kr), _key(orow))
    st.markdown(
        f"**{first}** {C.md(os.path.basename(keeper.path))} ({keeper.width}x{keeper.height}) · "
        f"**other** {C.md(os.path.basename(other.path))} ({other.width}x{other.height}) · "
        f"{C.md(c.aligned)} · differs on {c.differ:.1%} of the overlap"
    )
    viewer(c, first, key=f"cmp_{kr.id}_{orow.id}")


def viewer(c, first: str = "keeper", key: str = "cmp") -> None:
    """The two pictures with one zoom and pan (an HTML component: the images travel inside it)."""
    html = (
        _HTML.replace("@KEEPER@", _uri(c.keeper))
        .replace("@OTHER@", _uri(c.member))
        .replace("@DIFF@", _uri(c.diff))
        .replace("@FIRST@", first)
    )
    components.html(html, height=HEIGHT)


_HTML = """<style>
html,body{height:100%}
body{margin:0;font:14px system-ui,sans-serif;color:#31333f;display:flex;flex-direction:column}
#bar{display:flex;gap:6px;align-items:center;min-height:40px;flex-wrap:wrap;padding-bottom:4px}
#bar button{border:1px solid #ccc;background:#fff;border-radius:6px;padding:4px 10px;cursor:pointer}
#bar button.on{background:#31333f;color:#fff}
#panes{display:flex;gap:8px;flex:1;min-height:0}
@media (max-width:600px){#panes{flex-direction:column} #info{display:none}}
.pane{flex:1;position:relative;overflow:hidden;background:#1e1e1e;border-radius:6px;cursor:grab;touch-action:none}
.pane img{position:absolute;left:0;top:0;transform-origin:0 0;user-select:none;-webkit-user-drag:none}
.tag{position:absolute;left:8px;top:8px;background:rgba(0,0,0,.6);color:#fff;padding:2px 8px;border-radius:4px}
</style>
<div id="bar"><button data-m="side" class="on">Side by side</button><button data-m="flicker">Flicker</button>
<button data-m="diff">Differences</button><span style="width:12px"></span>
<button id="fit">Fit</button><button id="one">1:1</button><button id="plus">+</button><button id="minus">-</button>
<span id="info" style="margin-left:8px;color:#666">wheel: zoom · drag: pan (both panes together)</span></div>
<div id="panes"><div class="pane" id="p1"><img id="i1" src="@KEEPER@"><span class="tag" id="t1">@FIRST@</span></div>
<div class="pane" id="p2"><img id="i2" src="@OTHER@">
<span class="tag" id="t2">other (aligned to the @FIRST@)</span></div></div>
<script>
const K=document.getElementById("i1").src, O=document.getElementById("i2").src,
 D="@DIFF@", i1=document.getElementById("i1"), i2=document.getElementById("i2"),
 p1=document.getElementById("p1"), p2=document.getElementById("p2"),
 t1=document.getElementById("t1"), t2=document.getElementById("t2");
let v={s:1,x:0,y:0}, mode="side", timer=null, drag=null;
function paint(){for(const i of [i1,i2]) i.style.transform=`translate(${v.x}px,${v.y}px) scale(${v.s})`;}
function fit(){const p=p1.getBoundingClientRect(), w=i1.naturalWidth||1, h=i1.naturalHeight||1;
 v.s=Math.min(p.width/w,p.height/h); v.x=(p.width-w*v.s)/2; v.y=(p.height-h*v.s)/2; paint();}
function zoom(f,cx,cy){const s=Math.min(16,Math.max(0.05,v.s*f));
 v.x=cx-(cx-v.x)*s/v.s; v.y=cy-(cy-v.y)*s/v.s; v.s=s; paint();}
for(const p of [p1,p2]){
 p.addEventListener("wheel",e=>{e.preventDefault(); const r=p.getBoundingClientRect();
  zoom(e.deltaY<0?1.2:1/1.2,e.clientX-r.left,e.clientY-r.top);},{passive:false});
 p.addEventListener("pointerdown",e=>{drag={x:e.clientX,y:e.clientY}; p.setPointerCapture(e.pointerId);});
 p.addEventListener("pointermove",e=>{if(!drag)return; v.x+=e.clientX-drag.x; v.y+=e.clientY-drag.y;
  drag={x:e.clientX,y:e.clientY}; paint();});
 p.addEventListener("pointerup",()=>{drag=null;}); p.addEventListener("dblclick",fit);}
function setMode(m){mode=m; clearInterval(timer); timer=null;
 for(const b of document.querySelectorAll("#bar [data-m]")) b.classList.toggle("on",b.dataset.m===m);
 p2.style.display=m==="flicker"?"none":""; i1.src=K; t1.textContent="@FIRST@";
 if(m==="side"){i2.src=O; t2.textContent="other (aligned to the @FIRST@)";}
 if(m==="diff"){i2.src=D; t2.textContent="differences: red differs, blue not in the other";}
 if(m==="flicker"){let on=false; timer=setInterval(()=>{on=!on; i1.src=on?O:K;
  t1.textContent=on?"other (aligned)":"@FIRST@";},700);}
 setTimeout(fit,0);}
for(const b of document.querySelectorAll("#bar [data-m]")) b.onclick=()=>setMode(b.dataset.m);
document.getElementById("fit").onclick=fit;
document.getElementById("one").onclick=()=>{const r=p1.getBoundingClientRect(); zoom(1/v.s,r.width/2,r.height/2);};
document.getElementById("plus").onclick=()=>{const r=p1.getBoundingClientRect(); zoom(1.5,r.width/2,r.height/2);};
document.getElementById("minus").onclick=()=>{const r=p1.getBoundingClientRect(); zoom(1/1.5,r.width/2,r.height/2);};
i1.onload=()=>{if(!i1.dataset.done){i1.dataset.done=1; fit();}}; window.addEventListener("resize",fit);
if(i1.complete) fit();
</script>"""
