#!/usr/bin/env python3
"""Drives a real headless Chromium over the DevTools protocol (Python stdlib only: a minimal
WebSocket client) and checks a driftscope HTML report: no console errors, one chart point per
compared place, hover tooltip, filtering, the module tree (first divergence's path open, expand,
search, click-to-filter), then a screenshot; and, given --big-report, the tree and table of a
generated 100k-entry report. Exit status 1 on any failure."""

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


class WS:
    """Just enough of RFC 6455 for the DevTools protocol (text frames, client masking)."""

    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.s = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                raise RuntimeError("websocket handshake failed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"websocket handshake refused: {head[:200]!r}")

    def _exact(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise RuntimeError("websocket closed")
            b += chunk
        return b

    def send(self, text):
        data = text.encode()
        hdr = bytearray([0x81])
        n = len(data)
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += struct.pack(">H", n)
        else:
            hdr.append(0x80 | 127)
            hdr += struct.pack(">Q", n)
        mask = os.urandom(4)
        hdr += mask
        self.s.sendall(bytes(hdr) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(n)
            op = b0 & 0x0F
            if op == 8:
                raise RuntimeError("websocket closed by the browser")
            if op in (9, 10):
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()


class Page:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    def call(self, method, **params):
        self.next_id += 1
        me = self.next_id
        self.ws.send(json.dumps({"id": me, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == me:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            for i, e in enumerate(self.events):
                if e.get("method") == name:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))
        raise RuntimeError(f"timed out waiting for {name}")

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")


def frame(p, ms=100):
    p.js("new Promise(r => requestAnimationFrame(() => setTimeout(r, %d)))" % ms)


def click(p, expr):
    """Clicks the element `expr` (a JS expression) with real mouse events at its centre."""
    r = p.js("(() => { const e = %s; if (!e) return null; e.scrollIntoView({block: 'nearest'});"
             " const b = e.getBoundingClientRect(); return {x: b.left + b.width / 2, y: b.top + b.height / 2}; })()" % expr)
    if r is None:
        raise RuntimeError(f"nothing to click: {expr}")
    for t in ("mousePressed", "mouseReleased"):
        p.call("Input.dispatchMouseEvent", type=t, x=r["x"], y=r["y"], button="left", clickCount=1)
    frame(p)


def type_into(p, sel, text):
    p.js("(() => { const f = document.querySelector(%s); f.value = %s;"
         " f.dispatchEvent(new Event('input')); })()" % (json.dumps(sel), json.dumps(text)))
    frame(p)


# Rendered tree rows as the page shows them: node id, depth (indent), toggle, label, classes.
TREE_ROWS = """Array.from(document.querySelectorAll('#treerows .tnode')).map(e => ({
  n: +e.dataset.n, indent: parseInt(e.style.paddingLeft), tog: e.querySelector('.tog').textContent,
  label: e.querySelector('.tlabel').textContent, cls: e.className, top: parseInt(e.style.top)}))"""

# Is this row inside the tree's scrolled viewport?
IN_VIEW = """((n) => { const box = document.getElementById('tree').getBoundingClientRect();
  const e = document.querySelector('#treerows .tnode[data-n="' + n + '"]'); if (!e) return false;
  const b = e.getBoundingClientRect(); return b.top >= box.top && b.bottom <= box.bottom; })"""


def check_tree(p, check):
    """The module tree on the llama fault report: the first divergence's path open on load,
    expand, search, click-to-filter."""
    rows = p.js(TREE_ROWS)
    first = [r for r in rows if "first" in r["cls"].split()]
    check("tree: the first divergence is shown on load",
          len(first) == 1 and first[0]["label"] == "Functional.silu.1"
          and p.js(IN_VIEW + "(%d)" % first[0]["n"]), first)
    if first:
        # Every row above it with a smaller indent on its path is open.
        path, depth = [], first[0]["indent"]
        for r in sorted((r for r in rows if r["top"] < first[0]["top"]), key=lambda r: -r["top"]):
            if r["indent"] < depth:
                path.append(r)
                depth = r["indent"]
        check("tree: its path is open, the rest closed",
              len(path) >= 4 and all(r["tog"] == "▾" for r in path)
              and any(r["tog"] == "▸" for r in rows)
              and any("self.mlp(hidden_states)" in r["label"] for r in path), [r["label"] for r in path])

    # Expand: a closed node opens and its children appear right under it, one level deeper.
    p.js("document.getElementById('tree').scrollTop = 0")
    frame(p)
    rows = p.js(TREE_ROWS)
    closed = next((r for r in rows if r["tog"] == "▸"), None)
    before = p.js("driftscope.treeVisible()")
    if closed:
        click(p, "document.querySelector('#treerows .tnode[data-n=\"%d\"] .tog')" % closed["n"])
        rows = sorted(p.js(TREE_ROWS), key=lambda r: r["top"])
        k = next(i for i, r in enumerate(rows) if r["n"] == closed["n"])
        child = rows[k + 1] if k + 1 < len(rows) else None
        check("tree: clicking ▸ opens a node",
              rows[k]["tog"] == "▾" and p.js("driftscope.treeVisible()") > before
              and child is not None and child["indent"] > rows[k]["indent"], (closed, child))
    else:
        check("tree: clicking ▸ opens a node", False, "no closed node rendered")

    # Search: every SiLU call is listed, nothing that neither matches nor leads to a match.
    type_into(p, "#treesearch", "silu")
    rows = p.js(TREE_ROWS)
    labels = [r["label"] for r in rows]
    hits = [r for r in rows if "hit" in r["cls"].split()]
    check("tree: search lists the matches and their ancestors",
          all(f"Functional.silu.{i}" in labels for i in range(4))
          and all("silu" in r["label"].lower() for r in hits)
          and "match" in p.js("document.getElementById('treeinfo').textContent")
          and len(rows) < 20, labels)
    type_into(p, "#treesearch", "")

    # Click-to-filter: clicking the MLP call site narrows the table and the chart to it.
    total, drawn = p.js("driftscope.visibleRows()"), p.js("driftscope.drawnPoints()")
    type_into(p, "#treesearch", "self.mlp(")
    click(p, "Array.from(document.querySelectorAll('#treerows .tlabel')).find(e => e.textContent.includes('self.mlp('))")
    vis = p.js("driftscope.visibleRows()")
    ops = set(p.js("Array.from(document.querySelectorAll('#trows .row')).map(r => r.children[3].textContent)"))
    info = p.js("(() => { const e = document.getElementById('nodeinfo'); return e.hidden ? '' : e.textContent; })()")
    check("tree: clicking a node filters table and chart to it",
          0 < vis < total and ops and ops <= {"linear", "silu", "__mul__"}
          and p.js("driftscope.drawnPoints()") < drawn and "self.mlp(" in info, (vis, total, ops, info))
    click(p, "document.getElementById('clearnode')")
    check("tree: 'show all' clears the node filter", p.js("driftscope.visibleRows()") == total)
    type_into(p, "#treesearch", "")


def check_big(p, check, path):
    """A generated 100k-entry report: the tree and table render only what is in view, and
    search, open and click-to-filter still give the right rows."""
    p.events.clear()
    p.call("Page.navigate", url=Path(path).resolve().as_uri())
    p.wait_event("Page.loadEventFired", timeout=120)
    frame(p, 200)
    errs = console_errors(p.events)
    check("100k: page loads without console errors", not errs and p.js("driftscope.totalRows()") == 100000, errs)
    nodes = p.js("driftscope.treeNodes()")
    check("100k: tree holds every module (52,101 nodes) and renders few",
          nodes == 52101 and 0 < p.js("driftscope.treeRendered()") < 100, nodes)
    rows = p.js(TREE_ROWS)
    first = [r for r in rows if "first" in r["cls"].split()]
    check("100k: the first divergence's path is open and in view",
          len(first) == 1 and first[0]["label"] == "m3: Dropout" and p.js(IN_VIEW + "(%d)" % first[0]["n"]), first)
    # Scroll to the very end of the open tree: the last rows are rendered, still few.
    p.js("(() => { const t = document.getElementById('tree'); t.scrollTop = t.scrollHeight; t.dispatchEvent(new Event('scroll')); })()")
    frame(p)
    last = max(p.js(TREE_ROWS), key=lambda r: r["top"])
    check("100k: scrolling renders the end of the tree", last["label"] == "99: Block" and p.js("driftscope.treeRendered()") < 100, last)
    type_into(p, "#treesearch", "blocks.73.layers.11.m2.GELU")
    labels = [r["label"] for r in p.js(TREE_ROWS)]
    check("100k: search finds one leaf among 50,000", labels == ["model", "73: Block", "11: Layer", "m2: GELU"],
          (labels, p.js("document.getElementById('treeinfo').textContent")))
    click(p, "Array.from(document.querySelectorAll('#treerows .tlabel')).find(e => e.textContent === '11: Layer')")
    names = p.js("Array.from(document.querySelectorAll('#trows .row')).map(r => r.children[2].textContent)")
    check("100k: clicking a layer shows its 50 tensors only",
          p.js("driftscope.visibleRows()") == 50 and names and all(n.startswith("Module.blocks.73.layers.11.") for n in names),
          (p.js("driftscope.visibleRows()"), names[:3]))
    errs = console_errors(p.events)
    check("100k: no console errors after interaction", not errs, errs)


def console_errors(events):
    out = []
    for e in events:
        m, p = e.get("method"), e.get("params", {})
        if m == "Runtime.exceptionThrown":
            out.append(p["exceptionDetails"].get("text", "exception"))
        elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
            out.append(p["entry"].get("text", ""))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--report", required=True, help="index.html")
    ap.add_argument("--compare", required=True, help="driftscope compare --json of run 1")
    ap.add_argument("--screenshot", required=True)
    ap.add_argument("--big-report", help="index.html of the generated 100k-entry dump")
    a = ap.parse_args()

    comp = json.load(open(a.compare))
    places = {p["place"] for p in comp["pairs"] if p["status"] == "compared" and "rel_l2_err" in p}
    first = (comp["analysis"].get("first_divergence") or {}).get("name")

    profile = tempfile.mkdtemp(prefix="driftscope-chromium-")
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=1400,1000",
        "about:blank",
    ]
    proc = subprocess.Popen([a.chromium] + flags, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    passed, failed = 0, 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name} {detail}")

    try:
        port_file = Path(profile) / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        p = Page(WS(page["webSocketDebuggerUrl"]))
        for d in ("Page", "Runtime", "Log"):
            p.call(f"{d}.enable")
        p.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)
        p.call("Page.navigate", url=Path(a.report).resolve().as_uri())
        p.wait_event("Page.loadEventFired")
        p.js("new Promise(r => requestAnimationFrame(() => setTimeout(r, 200)))")

        errs = console_errors(p.events)
        check("page loads without console errors", not errs and p.js("typeof window.driftscope") == "object", errs)

        n = p.js("driftscope.pointCount(0)")
        check("one chart point per compared place", n == len(places), f"{n} points, {len(places)} places")
        check("every point of run 1 is drawn", p.js("driftscope.drawnPoints()") >= len(places))

        total = p.js("driftscope.totalRows()")
        check("table holds every pair", total == len(comp["pairs"]) and p.js("driftscope.visibleRows()") == total,
              f"{total} rows, {len(comp['pairs'])} pairs")
        check("table is virtualized", 0 < p.js("driftscope.renderedRows()") < total)

        k = p.js("Math.floor(driftscope.pointCount(0) / 2)")
        pt = p.js(f"driftscope.hit({k})")
        p.call("Input.dispatchMouseEvent", type="mouseMoved", x=pt["x"], y=pt["y"])
        p.js("new Promise(r => setTimeout(r, 100))")
        tip = p.js("(() => { const t = document.getElementById('tooltip'); return t.hidden ? '' : t.innerText; })()")
        check("hovering a point shows the tooltip", "rel_l2_err" in tip and "verdict" in tip, repr(tip[:200]))

        p.call("Input.dispatchMouseEvent", type="mousePressed", x=pt["x"], y=pt["y"], button="left", clickCount=1)
        p.call("Input.dispatchMouseEvent", type="mouseReleased", x=pt["x"], y=pt["y"], button="left", clickCount=1)
        sel = p.js("document.querySelectorAll('#trows .row.sel').length")
        check("clicking a point selects its table row", sel == 1, f"{sel} selected rows")

        if first:
            p.js(
                "(() => { const f = document.getElementById('filter'); f.value = %s;"
                " f.dispatchEvent(new Event('input')); })()" % json.dumps(first.replace(".", "\\.") + "\\.output")
            )
            p.js("document.querySelector('#trows .row').click()")
            imgs = p.js("document.querySelectorAll('#detail img').length")
            check("first divergence has its histogram and heatmap", imgs == 2, f"{imgs} images")

        p.js("(() => { const f = document.getElementById('filter'); f.value = 'silu';"
             " f.dispatchEvent(new Event('input')); })()")
        vis = p.js("driftscope.visibleRows()")
        names = p.js("Array.from(document.querySelectorAll('#trows .row')).map(r => r.children[2].textContent)")
        check("filtering changes the visible rows",
              0 < vis < total and names and all("silu" in s.lower() for s in names), f"{vis} of {total}")

        type_into(p, "#filter", "")
        check_tree(p, check)

        errs = console_errors(p.events)
        check("no console errors after interaction", not errs, errs)

        shot = p.call("Page.captureScreenshot", format="png")
        Path(a.screenshot).parent.mkdir(parents=True, exist_ok=True)
        Path(a.screenshot).write_bytes(base64.b64decode(shot["data"]))
        check("screenshot saved", Path(a.screenshot).stat().st_size > 1000)

        if a.big_report:
            check_big(p, check, a.big_report)
    except Exception as e:  # any protocol failure counts as a failed check
        check("browser session", False, repr(e))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"browser: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
