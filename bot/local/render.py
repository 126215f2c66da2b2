"""Block Kit as HTML for the local workspace: messages (sections, fields, context, headers,
dividers, actions with buttons and selects) and modals (inputs, static and external selects,
radio buttons, checkboxes). Every piece of text is escaped (markupsafe); mrkdwn is rendered as
a safe subset (*bold*, _italic_, ~strike~, `code`, ```blocks```, > quotes, <http(s) links|…>,
<@U…> mentions as names). Interactive elements carry their ids in data- attributes for the
page's script (bot/local/static/workspace.js); nothing else is fetched, images show their
alt text."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from markupsafe import Markup, escape

#: the Slack user id → display name lookup used for mentions
Names = Callable[[str], str]

_ANGLE = re.compile(r"<([^<>]*)>")
_CODE_BLOCK = re.compile(r"```(.+?)```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
#: the emoji shortcodes the bot's messages use (bot/slack), as symbols every font has; others
#: stay as typed
EMOJI = {"large_green_circle": '<span class="emoji green">●</span>', "red_circle": '<span class="emoji red">●</span>',
         "white_circle": '<span class="emoji">○</span>', "warning": '<span class="emoji amber">⚠</span>',
         "white_check_mark": '<span class="emoji green">✔</span>', "x": '<span class="emoji red">✖</span>'}


def _unescape_slack(text: str) -> str:
    """Slack's own escaping of &, < and > in message text (Slack "Formatting text")."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def safe_url(url: str) -> str | None:
    return url if url.lower().startswith(_SAFE_SCHEMES) else None


def _angle(token: str, names: Names) -> Markup:
    """One <…> token of mrkdwn: a link, a mention, a channel or a special mention."""
    target, _, label = token.partition("|")
    if target.startswith("@"):
        return Markup('<span class="mention">@{}</span>').format(names(target[1:]))
    if target.startswith("#"):
        return Markup('<span class="mention">#{}</span>').format(label or target[1:])
    if target.startswith("!date"):  # a date formatted for the reader; its fallback text here
        return escape(_unescape_slack(label))
    if target.startswith("!"):
        return Markup('<span class="mention">@{}</span>').format(label or target[1:].split("^")[0])
    url = safe_url(_unescape_slack(target))
    text = _unescape_slack(label or target)
    if url is None:
        return escape(text)
    return Markup('<a href="{}" target="_blank" rel="noopener noreferrer">{}</a>').format(url, text)


def mrkdwn(text: str, names: Names) -> Markup:
    """Slack mrkdwn as safe HTML: escaped first, then the formatting marks turned into tags."""
    tokens: list[Markup] = []

    def hold(html: Markup) -> str:
        tokens.append(html)
        return f"\x00{len(tokens) - 1}\x00"

    text = text.replace("\x00", "")  # the placeholders' marker cannot come from the text
    # code first (nothing inside it is formatted), then links and mentions
    text = _CODE_BLOCK.sub(lambda m: hold(Markup("<pre>{}</pre>").format(_unescape_slack(m.group(1)).strip("\n"))), text)
    text = _CODE.sub(lambda m: hold(Markup("<code>{}</code>").format(_unescape_slack(m.group(1)))), text)
    text = _ANGLE.sub(lambda m: hold(_angle(m.group(1), names)), text)
    html = str(escape(_unescape_slack(text)))
    html = _BOLD.sub(r"<b>\1</b>", html)
    html = _ITALIC.sub(r"<i>\1</i>", html)
    html = _STRIKE.sub(r"<s>\1</s>", html)
    html = _SHORTCODE.sub(lambda m: EMOJI.get(m.group(1), m.group(0)), html)
    lines = []
    for line in html.split("\n"):
        lines.append(f"<blockquote>{line[5:]}</blockquote>" if line.startswith("&gt; ") else line)
    html = "<br>".join(lines)
    html = re.sub(r"\x00(\d+)\x00", lambda m: str(tokens[int(m.group(1))]), html)
    return Markup(html)


def text_object(obj: Any, names: Names) -> Markup:
    if not isinstance(obj, dict):
        return Markup("")
    if obj.get("type") == "mrkdwn":
        return mrkdwn(str(obj.get("text", "")), names)
    return Markup("<br>").join(escape(line) for line in str(obj.get("text", "")).split("\n"))


def plain(obj: Any) -> str:
    return str(obj.get("text", "")) if isinstance(obj, dict) else ""


def _data(**attrs: Any) -> Markup:
    """data- attributes, escaped; None values left out."""
    return Markup(" ").join(
        Markup('data-{}="{}"').format(name.replace("_", "-"), value if isinstance(value, str) else json.dumps(value))
        for name, value in attrs.items() if value is not None
    )


def option_value(option: Mapping[str, Any]) -> dict[str, Any]:
    """An option as the page's script hands it back to the bot (text and value only)."""
    return {"text": {"type": "plain_text", "text": plain(option.get("text"))}, "value": option.get("value", "")}


def element(el: Any, block_id: str, names: Names, *, in_input: bool = False) -> Markup:
    if not isinstance(el, dict):
        return Markup("")
    kind = el.get("type")
    ids = _data(action_id=el.get("action_id"), block_id=block_id, type=kind)
    if kind == "button":
        style = el.get("style") or "default"
        confirm = el.get("confirm")
        confirm_text = f"{plain(confirm.get('title'))}\n\n{plain(confirm.get('text'))}" if isinstance(confirm, dict) else None
        url = safe_url(str(el.get("url", ""))) if el.get("url") else None
        extra = _data(value=el.get("value"), confirm=confirm_text, url=url)
        if url:
            return Markup('<a class="bk-button bk-{}" href="{}" target="_blank" rel="noopener noreferrer" {} {}>{}</a>').format(
                style, url, ids, extra, plain(el.get("text")))
        return Markup('<button type="button" class="bk-button bk-{}" {} {}>{}</button>').format(
            style, ids, extra, plain(el.get("text")))
    if kind in ("static_select", "overflow"):
        options = list(el.get("options") or [])
        for group in el.get("option_groups") or []:
            options += group.get("options") or []
        initial = (el.get("initial_option") or {}).get("value")
        placeholder = plain(el.get("placeholder")) or ("…" if kind == "overflow" else "Select an option")
        items = [Markup('<option value="">{}</option>').format(placeholder)] + [
            Markup('<option value="{}" {} {}>{}</option>').format(
                o.get("value", ""), Markup("selected") if o.get("value") == initial else "",
                _data(option=option_value(o)), plain(o.get("text")))
            for o in options
        ]
        return Markup('<select class="bk-input bk-select" {}>{}</select>').format(ids, Markup("").join(items))
    if kind == "external_select":
        initial = el.get("initial_option")
        return Markup(
            '<span class="bk-input bk-external" {} {}><input type="search" class="bk-external-query" autocomplete="off" '
            'placeholder="{}" value="{}"><span class="bk-external-options" role="listbox"></span></span>'
        ).format(ids, _data(min_query_length=el.get("min_query_length"), option=option_value(initial) if initial else None),
                 plain(el.get("placeholder")) or "Type to search", plain(initial.get("text")) if initial else "")
    if kind in ("radio_buttons", "checkboxes"):
        chosen = {o.get("value") for o in el.get("initial_options") or []} | {(el.get("initial_option") or {}).get("value")}
        box = "radio" if kind == "radio_buttons" else "checkbox"
        name = f"{block_id}/{el.get('action_id')}"
        items = [
            Markup('<label class="bk-choice"><input type="{}" name="{}" value="{}" {} {}> {}{}</label>').format(
                box, name, o.get("value", ""), Markup("checked") if o.get("value") in chosen else "",
                _data(option=option_value(o)), text_object(o.get("text"), names),
                Markup('<small>{}</small>').format(plain(o.get("description"))) if o.get("description") else "")
            for o in el.get("options") or []
        ]
        return Markup('<div class="bk-input bk-choices" {}>{}</div>').format(ids, Markup("").join(items))
    if kind in ("plain_text_input", "email_text_input", "url_text_input", "number_input"):
        attrs = _data(min_length=el.get("min_length"), max_length=el.get("max_length"))
        placeholder, initial = plain(el.get("placeholder")), el.get("initial_value") or ""
        if el.get("multiline"):
            return Markup('<textarea class="bk-input bk-text" rows="3" {} {} placeholder="{}">{}</textarea>').format(
                ids, attrs, placeholder, initial)
        html_type = {"email_text_input": "email", "url_text_input": "url", "number_input": "number"}.get(kind, "text")
        return Markup('<input class="bk-input bk-text" type="{}" {} {} placeholder="{}" value="{}">').format(
            html_type, ids, attrs, placeholder, initial)
    if kind == "datepicker":
        return Markup('<input class="bk-input bk-text" type="date" {} value="{}">').format(ids, el.get("initial_date") or "")
    if kind == "image":
        return Markup('<span class="bk-image">[{}]</span>').format(el.get("alt_text", "image"))
    return Markup('<span class="bk-unsupported">[{} not shown here]</span>').format(kind)


def block(b: Any, names: Names, *, errors: Mapping[str, str] | None = None) -> Markup:
    if not isinstance(b, dict):
        return Markup("")
    kind, block_id = b.get("type"), str(b.get("block_id", ""))
    if kind == "header":
        return Markup('<h3 class="bk-header">{}</h3>').format(plain(b.get("text")))
    if kind == "divider":
        return Markup('<hr class="bk-divider">')
    if kind == "section":
        parts = []
        if "text" in b:
            parts.append(Markup('<div class="bk-text">{}</div>').format(text_object(b["text"], names)))
        if b.get("fields"):
            parts.append(Markup('<div class="bk-fields">{}</div>').format(
                Markup("").join(Markup("<div>{}</div>").format(text_object(f, names)) for f in b["fields"])))
        accessory = element(b["accessory"], block_id, names) if b.get("accessory") else ""
        return Markup('<div class="bk-section"><div class="bk-section-body">{}</div>{}</div>').format(
            Markup("").join(parts), Markup('<div class="bk-accessory">{}</div>').format(accessory) if accessory else "")
    if kind == "context":
        return Markup('<div class="bk-context">{}</div>').format(Markup(" · ").join(
            element(e, block_id, names) if isinstance(e, dict) and e.get("type") == "image" else text_object(e, names)
            for e in b.get("elements") or []))
    if kind == "actions":
        return Markup('<div class="bk-actions">{}</div>').format(
            Markup("").join(element(e, block_id, names) for e in b.get("elements") or []))
    if kind == "input":
        error = (errors or {}).get(block_id)
        return Markup(
            '<div class="bk-input-block" {}><label class="bk-label">{}{}</label>{}{}<div class="bk-error" role="alert">{}</div></div>'
        ).format(
            _data(block_id=block_id, dispatch=True if b.get("dispatch_action") else None),
            plain(b.get("label")), Markup(' <small>(optional)</small>') if b.get("optional") else "",
            element(b.get("element"), block_id, names, in_input=True),
            Markup('<div class="bk-hint">{}</div>').format(plain(b.get("hint"))) if b.get("hint") else "",
            error or "")
    if kind == "image":
        return Markup('<div class="bk-image">[{}]</div>').format(b.get("alt_text", "image"))
    if kind == "markdown":
        return Markup('<div class="bk-text">{}</div>').format(mrkdwn(str(b.get("text", "")), names))
    return Markup('<div class="bk-unsupported">[{} block not shown here]</div>').format(kind)


def blocks(items: Any, names: Names, *, errors: Mapping[str, str] | None = None) -> Markup:
    return Markup("").join(block(b, names, errors=errors) for b in items or [])


def message_body(text: str | None, items: Any, names: Names) -> Markup:
    """A message as Slack shows it: its blocks, or its text where it has none."""
    if items:
        return blocks(items, names)
    return Markup('<div class="bk-text">{}</div>').format(mrkdwn(text or "", names))
