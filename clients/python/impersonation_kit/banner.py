"""The impersonation banner, injected server-side into every HTML page of a session.

Built so the page cannot get rid of it for good: its content lives in a closed shadow root
(declarative shadow DOM), so the page's CSS cannot reach inside and its scripts cannot read
or change it; the host element's own style is inline and `!important`, which beats any
author stylesheet rule, `!important` included (CSS Cascade 5 §6.1: element-attached
declarations sort before layers and selectors). A strict CSP without `'unsafe-inline'` makes
the browser ignore style *attributes* in markup (CSP 3 `style-src-attr`), so the script sets
the same declarations again through the CSSOM (`style.setProperty(…, "important")`), which
CSP does not restrict; a MutationObserver (and a one-second check) puts the host back when it
is removed and restores its style and attributes when they are changed;
and it is written into every HTML response, so a reload always shows it. There is no close
control. Every value is HTML-escaped. The script and style carry the page's CSP nonce, so
it runs under a strict `script-src 'nonce-…'` policy; the script is the same bytes on every
page (its data is in attributes), so a policy may instead allow it by hash (`SCRIPT_SHA256`).
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from html import escape

from impersonation_kit.context import ImpersonationContext

MARKER = "data-impersonation-kit-banner"
TAG = "impersonation-kit-banner"
HOST_STYLE = (
    "all:initial!important;display:block!important;position:sticky!important;top:0!important;"
    "z-index:2147483647!important;visibility:visible!important;opacity:1!important;"
    "transform:none!important;clip-path:none!important;filter:none!important;"
    "width:auto!important;height:auto!important;margin:0!important;pointer-events:auto!important"
)

#: The custom element reaches its closed declarative shadow root through ElementInternals
#: (HTML §4.13.7.4) to run the countdown. If that fails (the name already defined by the page,
#: no ElementInternals) the banner still shows — declarative shadow DOM needs no script — and
#: is still put back when removed; only the countdown stays as the server rendered it.
#: HOST_STYLE as (property, value) pairs, for the script to set through the CSSOM
_HOST_DECLARATIONS = [d.split(":", 1) for d in HOST_STYLE.replace("!important", "").split(";") if d]

SCRIPT = r"""(function(){
var T="impersonation-kit-banner",root=null,host=null,D=__DECLARATIONS__;
try{customElements.define(T,class extends HTMLElement{constructor(){super();host=this;try{root=this.attachInternals().shadowRoot;}catch(e){}}});}catch(e){}
host=host||document.querySelector(T);if(!host)return;
var ends=+host.getAttribute("data-ends-at");
function protect(){
 var s=host.style;
 for(var i=0;i<D.length;i++){if(i===0||s.getPropertyValue(D[i][0])!==D[i][1]||s.getPropertyPriority(D[i][0])!=="important"){if(i===0&&s.getPropertyPriority("display")==="important"&&s.getPropertyValue("display")==="block")continue;s.setProperty(D[i][0],D[i][1],"important");}}
}
function fix(){
 if(!host.isConnected){(document.body||document.documentElement).prepend(host);}
 protect();
 ["hidden","inert","popover"].forEach(function(a){if(host.hasAttribute(a))host.removeAttribute(a);});
}
function tick(){
 fix();
 if(!root)return;
 var left=Math.max(0,Math.round(ends-Date.now()/1000)),el=root.getElementById("left");
 var h=Math.floor(left/3600),m=Math.floor(left%3600/60),s=left%60;
 if(el)el.textContent=(h?h+"h ":"")+(m<10&&h?"0":"")+m+"m "+(s<10?"0":"")+s+"s";
 if(left===0&&!tick.done){tick.done=1;setTimeout(function(){location.reload();},1500);}
}
new MutationObserver(fix).observe(document.documentElement,{childList:true,subtree:true,attributes:true,attributeFilter:["style","class","hidden","inert","popover"]});
setInterval(tick,1000);tick();
})();"""
SCRIPT = SCRIPT.replace("__DECLARATIONS__", json.dumps(_HOST_DECLARATIONS, separators=(",", ":")))
SCRIPT_SHA256 = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()

CSS = """
.bar{all:initial;display:flex;flex-wrap:wrap;gap:.3rem 1.2rem;align-items:center;padding:.45rem 1rem;
 background:#b3261e;color:#fff;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;box-shadow:0 2px 6px rgba(0,0,0,.35)}
strong{font-weight:700}.f{white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:22rem}
.l{opacity:.85;margin-right:.25rem}form{margin:0 0 0 auto}
button{font:inherit;font-weight:700;padding:.25rem .8rem;border:2px solid #fff;border-radius:4px;background:#fff;color:#b3261e;cursor:pointer}
"""


def _field(label: str, value: str | None, *, ident: str | None = None) -> str:
    if not value:
        return ""
    idattr = f' id="{ident}"' if ident else ""
    return f'<span class="f"><span class="l">{escape(label)}</span><strong{idattr}>{escape(value)}</strong></span>'


def _time_left(expires_at: int, now: float) -> str:
    left = max(0, int(expires_at - now))
    return f"{left // 60}m {left % 60:02d}s"


def render_banner(ctx: ImpersonationContext, *, end_path: str, csrf_token: str, nonce: str | None = None, now: float | None = None) -> str:
    """The banner's HTML, for injection or for a product's own template (`{{ banner|safe }}`)."""
    n = f' nonce="{escape(nonce)}"' if nonce else ""
    account = f"{ctx.account_name} ({ctx.account})" if ctx.account_name else ctx.account
    user = f"{ctx.customer_user_name} ({ctx.customer_user})" if ctx.customer_user_name else ctx.customer_user
    reason = ctx.reason if not ctx.ticket else f"{ctx.ticket} — {ctx.reason}" if ctx.reason else ctx.ticket
    scope = "read only" if ctx.read_only else "read and write"
    body = "".join(
        [
            '<span class="f"><strong>Support is impersonating this account</strong></span>',
            _field("Account", account),
            _field("User", user),
            _field("Agent", ctx.agent),
            _field("Reason", reason),
            _field("Scope", scope),
            _field("Time left", _time_left(ctx.expires_at, time.time() if now is None else now), ident="left"),
            f'<form method="post" action="{escape(end_path)}"><input type="hidden" name="csrf" value="{escape(csrf_token)}">'
            '<button type="submit">End session</button></form>',
        ]
    )
    return (
        f'<{TAG} {MARKER} data-ends-at="{int(ctx.expires_at)}" style="{HOST_STYLE}">'
        f'<template shadowrootmode="closed"><style{n}>{CSS}</style>'
        f'<div class="bar" role="region" aria-label="Impersonation session">{body}</div></template></{TAG}>'
        f"<script{n}>{SCRIPT}</script>"
    )


_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/_=-]+)'")
_BODY = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)


def csp_nonce(policies: list[str]) -> str | None:
    """The nonce a page's Content-Security-Policy allows for scripts (script-src, else
    default-src), so the banner's script and style run under it."""
    for policy in policies:
        directives = {d.strip().split(" ", 1)[0].lower(): d for d in policy.split(";") if d.strip()}
        for name in ("script-src-elem", "script-src", "default-src"):
            if name in directives:
                found = _NONCE.search(directives[name])
                if found:
                    return found.group(1)
                break
    return None


def inject(html: bytes, banner: str, charset: str = "utf-8") -> bytes:
    """Put the banner first in <body> (or first in the document when there is none). Never
    decided by looking for the banner in the page: a customer's text could contain it."""
    encoded = banner.encode(charset, "xmlcharrefreplace")
    found = _BODY.search(html)
    if found is None:
        return encoded + html
    return html[: found.end()] + encoded + html[found.end() :]
