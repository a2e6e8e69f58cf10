"""Loads Ferry's live status page in headless Chromium and reads it as a person would.

Usage: status_page.py URL RELAY_ID SCREENSHOT.png OPERATOR_TOKEN
Prints one JSON line: whether the page refuses a browser without credentials (401 with a Basic
challenge), whether the relay and a running transfer appear once the browser sends the operator
token as the Basic-auth password, and the transfer's progress read twice from the rendered page,
2.5 s apart. Drives Chromium over the DevTools
protocol, because --dump-dom can't wait on a page fed by a never-ending event stream.
"""
import base64, json, shutil, socket, subprocess, sys, tempfile, time, urllib.error, urllib.request
import websocket  # websocket-client

url, relay_id, screenshot, token = sys.argv[1:5]
try:
    urllib.request.urlopen(url, timeout=10)
    refused = {"status": 200, "challenge": None}
except urllib.error.HTTPError as error:
    refused = {"status": error.code, "challenge": error.headers.get("WWW-Authenticate")}
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
profile = tempfile.mkdtemp(prefix="ferry-chromium-")
chrome = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,800",
                           f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    pages = None
    for _ in range(100):
        try:
            pages = [t for t in json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json")) if t["type"] == "page"]
            if pages:
                break
        except OSError:
            pass
        time.sleep(0.1)
    ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=15)
    counter = 0

    def call(method, **params):
        global counter
        counter += 1
        ws.send(json.dumps({"id": counter, "method": method, "params": params}))
        while True:
            reply = json.loads(ws.recv())
            if reply.get("id") == counter:
                return reply.get("result", {})

    def read():
        # While the page is still navigating there is no body yet: that reads as an empty page.
        expression = ("document.body ? JSON.stringify({text: document.body.innerText, "
                      "running: [...document.querySelectorAll('#transfers tbody tr')]"
                      ".filter(tr => tr.lastChild.textContent === 'running' && tr.querySelector('.progress'))"
                      ".map(tr => +tr.querySelector('.progress').dataset.percent)}) : null")
        value = call("Runtime.evaluate", expression=expression, returnByValue=True).get("result", {}).get("value")
        return json.loads(value) if value else {"text": "", "running": []}

    # What a browser sends once its user has answered the Basic challenge: it then sends the
    # same header for the page's own EventSource on /v1/live.
    basic = base64.b64encode(f"operator:{token}".encode()).decode()
    call("Network.enable")
    call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {basic}"})
    call("Page.navigate", url=url)
    first = None
    deadline = time.time() + 20
    while time.time() < deadline:
        view = read()
        if relay_id in view["text"] and view["running"]:
            first = view
            break
        time.sleep(0.2)
    if first is None:
        print(json.dumps({"refused": refused, "relayShown": False, "transferShown": False, "page": read()["text"][:2000]}))
        sys.exit(1)
    time.sleep(2.5)
    second = read()
    png = call("Page.captureScreenshot", format="png")["data"]
    with open(screenshot, "wb") as f:
        f.write(base64.b64decode(png))
    print(json.dumps({"refused": refused, "relayShown": True, "transferShown": True, "first": max(first["running"]),
                      "second": max(second["running"]) if second["running"] else 100,
                      "offloadShown": "Offload ratio" in second["text"]}))
finally:
    chrome.kill()
    chrome.wait()
    shutil.rmtree(profile, ignore_errors=True)
