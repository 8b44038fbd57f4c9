"""A local stateful Stripe for tests: localstripe plus Checkout, the billing portal and signed webhooks.

localstripe (``python -m localstripe``) keeps customers, products, plans, subscriptions and invoices, but has
no Checkout or billing-portal sessions and sends no webhooks we can use. ``StripeStub`` is a small HTTP
server in front of it: it implements those two session kinds and their hosted pages itself, forwards every
other ``/v1/...`` request to localstripe unchanged, and posts Stripe-signed events to the app's webhook URL.
Point the ``stripe`` library at ``StripeStub.url`` (``stripe.api_base = stub.url``).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

API_VERSION = "2024-06-20"  # localstripe's objects have the pre-2025 ("basil") shape
TEST_CARD = dict(object="card", number="4242424242424242", exp_month="12", exp_year="2040", cvc="123")
AUTH = {"Authorization": "Bearer sk_test_stripe_stub"}  # localstripe takes any sk_ key
HOP_BY_HOP = {"host", "content-length", "connection", "keep-alive", "transfer-encoding", "accept-encoding"}
# localstripe without its pickle dump after every write (``/tmp/localstripe.pickle``), on IPv4 loopback only.
LOCALSTRIPE_MAIN = (
    "import sys; from aiohttp import web; from localstripe import resources, server; "
    "resources.Store.dump_to_disk = lambda self: None; "
    "web.run_app(server.app, host='127.0.0.1', port=int(sys.argv[1]), access_log=None, print=None)"
)


def sign_payload(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header value for ``payload``, as Stripe computes it."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_localstripe(timeout: float = 15) -> tuple[subprocess.Popen[bytes], str]:
    """Start localstripe on a free loopback port; return the process and its base URL once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", LOCALSTRIPE_MAIN, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise RuntimeError(f"localstripe exited with {process.returncode}: {stderr[-2000:]}")
        try:
            if requests.get(url + "/v1/plans", headers=AUTH, timeout=1).status_code == 200:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.05)
    stop_localstripe(process)
    raise TimeoutError(f"localstripe did not answer within {timeout}s")


def stop_localstripe(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stderr:
        process.stderr.close()


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def parse_form(body: str) -> dict[str, Any]:
    """``a[b][0][c]=v`` form encoding (what the stripe library sends) into nested dicts with string keys."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key) or [key]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


class StubError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StripeStub:
    def __init__(self, localstripe_url: str, webhook_url: str, webhook_secret: str) -> None:
        self.localstripe_url = localstripe_url.rstrip("/")
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.checkout_sessions: dict[str, dict[str, Any]] = {}
        self.portal_sessions: dict[str, dict[str, Any]] = {}
        self.deliveries: list[tuple[dict[str, Any], int]] = []  # every event posted, with the app's status
        self.api_posts: list[tuple[str, str | None]] = []  # (path, Idempotency-Key) of each API POST
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> StripeStub:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:  # shutdown() would wait forever for a server that never started
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def reset(self) -> None:
        """Forget the sessions and deliveries, and empty localstripe's store."""
        self.checkout_sessions.clear()
        self.portal_sessions.clear()
        self.deliveries.clear()
        requests.delete(self.localstripe_url + "/_config/data", timeout=10).raise_for_status()

    # -- events -----------------------------------------------------------------------------------------

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for event, _ in self.deliveries]

    def make_event(
        self, type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"object": obj} | ({"previous_attributes": previous} if previous else {})
        return {
            "id": _new_id("evt_"),
            "object": "event",
            "type": type,
            "created": int(time.time()),
            "data": data,
            "livemode": False,
            "api_version": API_VERSION,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }

    def post_event(
        self, event: dict[str, Any], secret: str | None = None, timestamp: int | None = None
    ) -> requests.Response:
        """Sign ``event`` (an envelope, e.g. one of ``self.events`` to replay it) and post it to the app."""
        payload = json.dumps(event).encode()
        signature = sign_payload(payload, self.webhook_secret if secret is None else secret, timestamp)
        headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
        response = requests.post(self.webhook_url, data=payload, headers=headers, timeout=30)
        self.deliveries.append((event, response.status_code))
        return response

    def send_event(
        self, type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> requests.Response:
        return self.post_event(self.make_event(type, obj, previous))

    # -- localstripe ------------------------------------------------------------------------------------

    def api(self, method: str, path: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call localstripe (JSON bodies work there); raise ``StubError`` on an error reply."""
        response = requests.request(method, self.localstripe_url + path, json=data, headers=AUTH, timeout=30)
        if response.status_code >= 400:
            raise StubError(response.status_code, f"localstripe {method} {path}: {response.text[:500]}")
        body: dict[str, Any] = response.json()
        return body

    def subscription_of(self, customer: str) -> dict[str, Any]:
        """The customer's subscription (localstripe also lists ``incomplete`` ones left by failed creates)."""
        subscriptions = self.api("GET", f"/v1/subscriptions?customer={customer}&limit=100")["data"]
        live = [s for s in subscriptions if s["status"] in ("active", "trialing", "past_due")]
        if not live:
            raise StubError(400, f"customer {customer} has no live subscription")
        return dict(live[-1])

    # -- API endpoints the stub implements ------------------------------------------------------------

    def create_checkout_session(self, form: dict[str, Any]) -> dict[str, Any]:
        if form.get("mode") != "subscription":
            raise StubError(400, "stripe_stub only implements mode=subscription")
        items = form.get("line_items") or {}
        item = items.get("0") if isinstance(items, dict) else None
        if not item or not item.get("price"):
            raise StubError(400, "line_items[0][price] is required")
        plan = self.api("GET", f"/v1/plans/{item['price']}")
        customer = form.get("customer")
        if not customer:
            customer = self.api("POST", "/v1/customers", {"email": form.get("customer_email")})["id"]
        session_id = _new_id("cs_test_")
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"{self.url}/checkout/{session_id}",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": customer,
            "customer_email": form.get("customer_email"),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata") or {},
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
            "subscription": None,
            "amount_total": plan["amount"] * int(item.get("quantity") or 1),
            "currency": plan["currency"],
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
        }
        self.checkout_sessions[session_id] = session
        session["_line_item"] = {"plan": plan["id"], "quantity": int(item.get("quantity") or 1)}
        session["_metadata"] = (form.get("subscription_data") or {}).get("metadata") or {}
        return session

    def create_portal_session(self, form: dict[str, Any]) -> dict[str, Any]:
        self.api("GET", f"/v1/customers/{form.get('customer')}")
        session_id = _new_id("bps_")
        session = {
            "id": session_id,
            "object": "billing_portal.session",
            "url": f"{self.url}/portal/{session_id}",
            "customer": form["customer"],
            "return_url": form.get("return_url"),
            "created": int(time.time()),
            "livemode": False,
        }
        self.portal_sessions[session_id] = session
        return session

    # -- hosted pages -------------------------------------------------------------------------------------

    def complete_checkout(self, session: dict[str, Any]) -> str:
        """Pay: card, subscription and the three events; return where to send the browser."""
        with self._lock:
            if session["status"] == "open":
                customer = self.api("GET", f"/v1/customers/{session['customer']}")
                if not customer.get("default_source"):
                    self.api("POST", f"/v1/customers/{customer['id']}/sources", {"source": TEST_CARD})
                created = self.api(
                    "POST",
                    "/v1/subscriptions",
                    {
                        "customer": customer["id"],
                        "items": [session["_line_item"]],
                        "metadata": session["_metadata"],
                    },
                )
                session.update(status="complete", payment_status="paid", subscription=created["id"])
                subscription = self.api("GET", f"/v1/subscriptions/{created['id']}")
                self.send_event("checkout.session.completed", public(session))
                self.send_event("customer.subscription.created", subscription)
                self.send_event("invoice.paid", self.invoice_for(subscription))
        return str(session["success_url"]).replace("{CHECKOUT_SESSION_ID}", session["id"])

    def invoice_for(self, subscription: dict[str, Any]) -> dict[str, Any]:
        if subscription.get("latest_invoice"):
            invoice = self.api("GET", f"/v1/invoices/{subscription['latest_invoice']}")
            return invoice | {"billing_reason": invoice.get("billing_reason") or "subscription_create"}
        return {  # localstripe makes no invoice for a trial: one consistent with the subscription
            "id": _new_id("in_"),
            "object": "invoice",
            "customer": subscription["customer"],
            "subscription": subscription["id"],
            "status": "paid",
            "billing_reason": "subscription_create",
            "amount_due": 0,
            "amount_paid": 0,
            "currency": subscription["plan"]["currency"],
            "period_start": subscription["current_period_start"],
            "period_end": subscription["current_period_end"],
            "lines": {"object": "list", "data": [], "has_more": False},
            "livemode": False,
        }

    def portal_action(self, session: dict[str, Any], action: str) -> str:
        before = self.subscription_of(session["customer"])
        path = f"/v1/subscriptions/{before['id']}"
        if action.startswith("switch:"):
            item = {"id": before["items"]["data"][0]["id"], "plan": action.removeprefix("switch:")}
            self.api("POST", path, {"items": [item]})
            previous = {"items": before["items"], "plan": before["plan"]}
            self.send_event("customer.subscription.updated", self.api("GET", path), previous)
        elif action == "cancel":
            self.api("POST", path, {"cancel_at_period_end": True})
            previous = {"cancel_at_period_end": before["cancel_at_period_end"]}
            self.send_event("customer.subscription.updated", self.api("GET", path), previous)
        elif action == "cancel_now":
            self.send_event("customer.subscription.deleted", self.api("DELETE", path))
        else:
            raise StubError(400, f"unknown portal action {action!r}")
        return str(session["return_url"])

    def checkout_page(self, session: dict[str, Any]) -> str:
        plan = self.api("GET", f"/v1/plans/{session['_line_item']['plan']}")
        name = html.escape(f"{plan.get('nickname') or plan.get('name') or plan['id']} ({plan['id']})")
        price = f"{plan['amount'] / 100:.2f} {plan['currency'].upper()} / {plan['interval']}"
        if session["status"] != "open":
            return _page("Checkout", f"<p>{name}: this checkout session is {session['status']}.</p>")
        form = '<form method="post"><button type="submit">Pay</button></form>'
        return _page("Checkout", f"<h1>{name}</h1><p>{price}</p>{form}")

    def portal_page(self, session: dict[str, Any]) -> str:
        plans = self.api("GET", "/v1/plans?limit=100")["data"]
        buttons = [(f"switch:{p['id']}", f"Switch to {p['id']}") for p in plans]
        buttons += [("cancel", "Cancel subscription"), ("cancel_now", "Cancel immediately")]
        rows = "".join(
            f'<button type="submit" name="action" value="{html.escape(v)}">{html.escape(label)}</button>'
            for v, label in buttons
        )
        return _page("Billing portal", f'<h1>Billing portal</h1><form method="post">{rows}</form>')


def public(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if not k.startswith("_")}


def _page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"


def _handler_for(stub: StripeStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def send(self, status: int, body: bytes, content_type: str, location: str | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(body)

        def send_json(self, status: int, obj: dict[str, Any]) -> None:
            self.send(status, json.dumps(obj).encode(), "application/json")

        def dispatch(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path.rstrip("/")
            try:
                self.route(path, body)
            except StubError as error:
                if path.startswith("/v1/"):
                    self.send_json(
                        error.status, {"error": {"type": "invalid_request_error", "message": error.message}}
                    )
                else:
                    self.send(error.status, html.escape(error.message).encode(), "text/html; charset=utf-8")
            except requests.RequestException as error:  # the app's webhook URL or localstripe is down
                self.send(502, f"stripe_stub: {error}".encode(), "text/plain; charset=utf-8")

        do_GET = do_POST = do_DELETE = dispatch

        def route(self, path: str, body: bytes) -> None:
            method = self.command
            if method == "POST" and path.startswith("/v1/"):
                stub.api_posts.append((path, self.headers.get("Idempotency-Key")))
            sessions, _, session_id = path.rpartition("/")
            authorized = self.headers.get("Authorization", "").startswith("Bearer sk_")
            if path.startswith(("/v1/checkout/", "/v1/billing_portal/")) and not authorized:
                raise StubError(401, "Invalid API Key provided")
            if (method, path) == ("POST", "/v1/checkout/sessions"):
                self.send_json(200, public(stub.create_checkout_session(parse_form(body.decode()))))
            elif (method, sessions) == ("GET", "/v1/checkout/sessions"):
                session = public(self.lookup(stub.checkout_sessions, session_id))
                expand = {v for k, v in parse_qsl(urlsplit(self.path).query) if k.startswith("expand")}
                for key in expand & {"customer", "subscription"}:
                    session[key] = session[key] and stub.api("GET", f"/v1/{key}s/{session[key]}")
                self.send_json(200, session)
            elif (method, path) == ("POST", "/v1/billing_portal/sessions"):
                self.send_json(200, stub.create_portal_session(parse_form(body.decode())))
            elif sessions == "/checkout":
                session = self.lookup(stub.checkout_sessions, session_id)
                if method == "POST":
                    self.send(303, b"", "text/plain", stub.complete_checkout(session))
                else:
                    self.send(200, stub.checkout_page(session).encode(), "text/html; charset=utf-8")
            elif sessions == "/portal":
                session = self.lookup(stub.portal_sessions, session_id)
                if method == "POST":
                    action = dict(parse_qsl(body.decode())).get("action", "")
                    self.send(303, b"", "text/plain", stub.portal_action(session, action))
                else:
                    self.send(200, stub.portal_page(session).encode(), "text/html; charset=utf-8")
            elif path.startswith("/v1/"):
                self.forward(body)
            else:
                raise StubError(404, f"stripe_stub: no route for {method} {path}")

        def lookup(self, sessions: dict[str, dict[str, Any]], session_id: str) -> dict[str, Any]:
            if session_id not in sessions:
                raise StubError(404, f"No such session: '{session_id}'")
            return sessions[session_id]

        def forward(self, body: bytes) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            response = requests.request(
                self.command, stub.localstripe_url + self.path, data=body or None, headers=headers, timeout=30
            )
            content_type = response.headers.get("Content-Type", "application/json")
            self.send(response.status_code, response.content, content_type)

    return Handler
