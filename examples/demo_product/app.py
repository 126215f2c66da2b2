"""The demo product: customers of several accounts sign in with a password, read their
account's notes, add notes and edit their profile. Support staff reach it through
impersonation-bot: the kit's middleware opens an isolated session from the bot's hand-off,
shows the banner, enforces the scope and reports writes. The product's only impersonation
code is `current_user()` (whom it acts as) and stamping `impersonation_context` on writes.

`create_app(config)` keys (all optional except as noted):
  BOT_URL         impersonation-bot's PUBLIC_BASE_URL (required for the kit)
  JWKS_URL        default BOT_URL/.well-known/jwks.json
  API_URL         where the product API is reached, default BOT_URL
  API_KEY         the product API key (`impersonation-bot api-keys create`)
  PUBLIC_URL      where browsers reach this app, e.g. http://localhost:5000
  LAUNCH_PATH     default /impersonation/launch (PUBLIC_URL + LAUNCH_PATH = PRODUCT_LAUNCH_URL)
  DATABASE        SQLite file, default demo_product.db
  SECRET_KEY      Flask's session key; KIT_SECRET the kit's (32+ bytes); random if unset
  SPOOL_DIR       where the kit spools actions while the bot is unreachable
  STATUS_CACHE_SECONDS  the kit's session-status cache (default 15)
  USE_KIT         False: run without the middleware (behind the kit's reverse proxy)
  TRUST_IMPERSONATION_HEADER  True: act on X-Impersonation-Context (only behind the proxy,
                  which strips any copy a browser sends)
  WEBHOOK_SECRET  the `whsec_…` secret of the bot's notification webhooks: POST
                  /impersonation/webhooks then records "support accessed your account" notices
                  (shown at /support-access) and ends a session at once on session.ended/revoked
"""
from __future__ import annotations

import hmac
import json
import logging
import secrets
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from markupsafe import Markup
from flask import Flask, abort, g, redirect, render_template, request, session, url_for
from werkzeug.security import check_password_hash, generate_password_hash

from impersonation_kit import ImpersonationContext, ImpersonationKit, ImpersonationLogFilter, KitConfig, SqliteJtiStore
from impersonation_kit.webhooks import WebhookRefused, WebhookVerifier
from impersonation_kit.wsgi import ImpersonationMiddleware, banner_html

log = logging.getLogger("demo_product")
HERE = Path(__file__).resolve().parent
DEMO_PASSWORD = "demo-password"  # every seeded customer's password (README.md)
SEED_ACCOUNTS = [("acme", "ACME Corp"), ("globex", "Globex"), ("initech", "Initech"), ("umbrella", "Umbrella")]
#: what a customer sees for each notification (Standard Webhooks event types the bot sends)
NOTICE_TEXT = {
    "session.started": "Support started a session in your account",
    "session.ended": "Support's session in your account ended",
    "session.revoked": "Support's session in your account was revoked",
    "request.denied": "A support request to access your account was denied",
}
SEED_USERS = [
    ("u-alice", "acme", "Alice Admin", "alice@acme.example"),
    ("u-bob", "acme", "Bob Builder", "bob@acme.example"),
    ("u-carol", "globex", "Carol", "carol@globex.example"),
    ("u-dave", "initech", "Dave", "dave@initech.example"),
    ("u-eve", "umbrella", "Eve", "eve@umbrella.example"),
]
SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES accounts(id),
  name TEXT NOT NULL, email TEXT NOT NULL, password_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, account_id TEXT NOT NULL REFERENCES accounts(id),
  author_id TEXT NOT NULL REFERENCES users(id), body TEXT NOT NULL, created_at TEXT NOT NULL,
  impersonation_context TEXT);
CREATE TABLE IF NOT EXISTS profile_changes (id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
  old_name TEXT NOT NULL, new_name TEXT NOT NULL, changed_at TEXT NOT NULL, impersonation_context TEXT);
CREATE TABLE IF NOT EXISTS support_notices (webhook_id TEXT PRIMARY KEY, account_id TEXT NOT NULL,
  type TEXT NOT NULL, agent TEXT NOT NULL, session_id TEXT NOT NULL, at TEXT NOT NULL);
"""


def init_db(path: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA)
        db.executemany("INSERT OR IGNORE INTO accounts (id, name) VALUES (?, ?)", SEED_ACCOUNTS)
        if db.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0:
            hashed = generate_password_hash(DEMO_PASSWORD)
            db.executemany(
                "INSERT INTO users (id, account_id, name, email, password_hash) VALUES (?, ?, ?, ?, ?)",
                [(uid, acc, name, email, hashed) for uid, acc, name, email in SEED_USERS],
            )


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__, template_folder=str(HERE / "templates"), static_folder=None)
    app.config.update(
        DATABASE="demo_product.db",
        LAUNCH_PATH="/impersonation/launch",
        PUBLIC_URL="http://localhost:5000",
        STATUS_CACHE_SECONDS=15.0,
        USE_KIT=True,
        TRUST_IMPERSONATION_HEADER=False,
        SESSION_COOKIE_NAME="demo_session",
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.config.update(config or {})
    app.secret_key = app.config.get("SECRET_KEY") or secrets.token_hex(32)
    init_db(app.config["DATABASE"])

    kit: ImpersonationKit | None = None
    if app.config["USE_KIT"]:
        kit = ImpersonationKit(
            KitConfig(
                bot_url=app.config["BOT_URL"],
                jwks_url=app.config.get("JWKS_URL"),
                api_key=app.config["API_KEY"],
                launch_url=app.config["PUBLIC_URL"].rstrip("/") + app.config["LAUNCH_PATH"],
                secret=(app.config.get("KIT_SECRET") or secrets.token_bytes(32)),
                api_url=app.config.get("API_URL"),
                status_cache_seconds=float(app.config["STATUS_CACHE_SECONDS"]),
            ),
            store=SqliteJtiStore(str(Path(app.config["DATABASE"]).with_suffix(".kit.db"))),
            spool_dir=app.config.get("SPOOL_DIR"),
        )
        app.wsgi_app = ImpersonationMiddleware(app.wsgi_app, kit)  # type: ignore[method-assign]
        kit.reporter.start()  # sends what an earlier run left in the spool
        app.extensions["impersonation_kit"] = kit
    for handler in logging.getLogger().handlers:
        handler.addFilter(ImpersonationLogFilter())
    log.addFilter(ImpersonationLogFilter())

    def db() -> sqlite3.Connection:
        if "db" not in g:
            g.db = sqlite3.connect(app.config["DATABASE"])
            g.db.row_factory = sqlite3.Row
        return g.db

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        conn = g.pop("db", None)
        if conn is not None:
            conn.close()

    def impersonation() -> ImpersonationContext | None:
        ctx = request.environ.get("impersonation.context")
        if ctx is None and app.config["TRUST_IMPERSONATION_HEADER"]:
            raw = request.headers.get("X-Impersonation-Context")
            if raw:
                data = json.loads(raw)
                ctx = ImpersonationContext(
                    session_id=data["session_id"], agent=data["agent"], account=data["account"],
                    customer_user=data["customer_user"], scope=data["scope"], expires_at=0,
                )
        return ctx

    def current_user() -> sqlite3.Row | None:
        """Whom this request acts as: the impersonated customer user during an impersonation
        session (the kit's context), else the customer signed in with the product's own
        session cookie, which the kit never touches."""
        if "user" in g:
            return g.user
        ctx = impersonation()
        if ctx is not None:
            user = db().execute("SELECT * FROM users WHERE id = ? AND account_id = ?", (ctx.customer_user, ctx.account)).fetchone()
            if user is None:
                abort(403, "The impersonated user does not exist in this product.")
        else:
            uid = session.get("user_id")
            user = db().execute("SELECT * FROM users WHERE id = ?", (uid,)).fetchone() if uid else None
        g.user = user
        return user

    def stamp() -> str | None:
        ctx = impersonation()
        return json.dumps(ctx.stamp(), sort_keys=True) if ctx is not None else None

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(32)
        return session["csrf"]

    @app.before_request
    def _nonce_and_csrf() -> None:
        g.nonce = secrets.token_urlsafe(16)
        # The webhook is authenticated by its signature, not a browser form.
        if request.method == "POST" and request.endpoint not in ("login", "impersonation_webhook"):
            sent = request.form.get("csrf", "")
            if not hmac.compare_digest(sent.encode(), session.get("csrf", "").encode()) or not sent:
                abort(403, "Form expired; reload the page.")

    @app.after_request
    def _csp(response):
        # A strict CSP with a per-response nonce: the kit's banner runs under it.
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{g.nonce}'; style-src 'nonce-{g.nonce}'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.context_processor
    def _template_globals() -> dict[str, Any]:
        return {"nonce": g.get("nonce"), "user": current_user(), "impersonation": impersonation(), "csrf": csrf_token}

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = None
        if request.method == "POST":
            user = db().execute("SELECT * FROM users WHERE email = ?", (request.form.get("email", "").strip().lower(),)).fetchone()
            if user is not None and check_password_hash(user["password_hash"], request.form.get("password", "")):
                session.clear()
                session["user_id"] = user["id"]
                return redirect(url_for("home"))
            error = "Wrong e-mail or password."
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("login"))

    def need_user() -> sqlite3.Row:
        user = current_user()
        if user is None:
            abort(redirect(url_for("login")))
        return user

    @app.get("/")
    def home():
        user = need_user()
        account = db().execute("SELECT * FROM accounts WHERE id = ?", (user["account_id"],)).fetchone()
        notes = db().execute(
            "SELECT notes.*, users.name AS author FROM notes JOIN users ON users.id = notes.author_id WHERE notes.account_id = ? ORDER BY notes.id DESC",
            (user["account_id"],),
        ).fetchall()
        return render_template("home.html", account=account, notes=notes)

    @app.post("/notes")
    def add_note():
        user = need_user()
        body = request.form.get("body", "").strip()
        if not body or len(body) > 2000:
            abort(400, "A note is 1 to 2000 characters.")
        cur = db().execute(
            "INSERT INTO notes (account_id, author_id, body, created_at, impersonation_context) VALUES (?, ?, ?, ?, ?)",
            (user["account_id"], user["id"], body, datetime.now(timezone.utc).isoformat(), stamp()),
        )
        db().commit()
        log.info("note %s added to %s", cur.lastrowid, user["account_id"])
        if kit is not None:
            kit.report_action("note.create", f"note/{cur.lastrowid}", {"account": user["account_id"], "length": len(body)})
        return redirect(url_for("home"))

    @app.route("/profile", methods=["GET", "POST"])
    def profile():
        user = need_user()
        if request.method == "POST":
            name = request.form.get("name", "").strip()
            if not name or len(name) > 100:
                abort(400, "A name is 1 to 100 characters.")
            db().execute("UPDATE users SET name = ? WHERE id = ?", (name, user["id"]))
            db().execute(
                "INSERT INTO profile_changes (user_id, old_name, new_name, changed_at, impersonation_context) VALUES (?, ?, ?, ?, ?)",
                (user["id"], user["name"], name, datetime.now(timezone.utc).isoformat(), stamp()),
            )
            db().commit()
            log.info("profile of %s renamed", user["id"])
            if kit is not None:
                kit.report_action("profile.update", f"user/{user['id']}", {"field": "name"})
            return redirect(url_for("profile"))
        return render_template("profile.html")

    verifier = (
        WebhookVerifier(app.config["WEBHOOK_SECRET"], store=SqliteJtiStore(str(Path(app.config["DATABASE"]).with_suffix(".webhooks.db"))))
        if app.config.get("WEBHOOK_SECRET") else None
    )

    @app.post("/impersonation/webhooks")
    def impersonation_webhook():
        if verifier is None:
            abort(404)
        try:
            event = verifier.verify(request.headers, request.get_data())  # the raw body is what was signed
        except WebhookRefused as refused:
            if refused.reason == "replayed":
                # Authentic, and already handled: the bot retries under the same webhook-id
                # when it did not see our answer. Acknowledge it, or it would keep retrying.
                return "", 204
            log.warning("webhook refused: %s", refused.reason)
            return {"error": refused.reason}, 400
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        kind, account, session_id = event.get("type"), data.get("account"), data.get("session_id")
        if kind not in NOTICE_TEXT or not isinstance(account, str) or not isinstance(session_id, str):
            return "", 204  # an event this product does not show: accepted, nothing to do
        if kind in ("session.ended", "session.revoked") and kit is not None:
            kit.end_now(session_id)
        db().execute(
            "INSERT OR IGNORE INTO support_notices (webhook_id, account_id, type, agent, session_id, at) VALUES (?, ?, ?, ?, ?, ?)",
            (request.headers["webhook-id"], account, kind, str(data.get("agent", "")), session_id,
             datetime.now(timezone.utc).isoformat(timespec="seconds")),
        )
        db().commit()
        return "", 204

    @app.get("/support-access")
    def support_access():
        user = need_user()
        notices = db().execute(
            "SELECT * FROM support_notices WHERE account_id = ? ORDER BY at DESC, rowid DESC", (user["account_id"],)
        ).fetchall()
        return render_template("support_access.html", notices=notices, text=NOTICE_TEXT)

    # The kit's template helper, for a page that places the banner itself (profile.html does).
    app.jinja_env.globals["impersonation_banner"] = lambda: Markup(banner_html(request.environ, nonce=g.get("nonce")))
    return app


