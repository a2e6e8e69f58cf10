/// The live status page: plain HTML and a little JavaScript that renders `/v1/live`'s
/// server-sent snapshots. No build step and nothing fetched from elsewhere.
enum StatusPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ferry status</title>
<style>
  body { font: 14px system-ui, sans-serif; margin: 24px; color: #222; }
  h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 24px; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; }
  .bar { background: #eee; width: 200px; height: 12px; display: inline-block; vertical-align: middle; }
  .bar > span { background: #2a7; height: 12px; display: block; }
  .swarm h3 { font-size: 14px; margin: 12px 0 4px; }
  .mono { font-family: ui-monospace, monospace; font-size: 12px; }
  #offload { font-size: 28px; font-weight: 600; }
</style>
</head>
<body>
<h1>Ferry</h1>
<div>Offload ratio: <span id="offload">–</span> <span id="offload-detail" class="mono"></span></div>
<svg id="offload-chart" width="600" height="80" style="border:1px solid #eee"></svg>
<h2>Swarms</h2>
<div id="swarms"></div>
<h2>Transfers</h2>
<table id="transfers"><thead><tr><th>request</th><th>device</th><th>source</th><th>progress</th><th>state</th></tr></thead><tbody></tbody></table>
<h2>Relays</h2>
<table id="relays"><thead><tr><th>relay</th><th>endpoint</th><th>forwards for</th><th>sessions</th><th>state</th></tr></thead><tbody></tbody></table>
<h2>Latest events</h2>
<table id="events" class="mono"><tbody></tbody></table>
<script>
const mib = b => (b / 1048576).toFixed(1) + " MiB";
const cell = t => { const td = document.createElement("td"); td.textContent = t; return td; };
function rows(id, items, make) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren(...items.map(item => { const tr = document.createElement("tr"); make(item).forEach(c => tr.append(c)); return tr; }));
}
function bar(received, total) {
  const pct = total > 0 ? Math.round(100 * received / total) : 0;
  const td = document.createElement("td");
  td.innerHTML = '<span class="bar"><span></span></span> ';
  td.querySelector(".bar > span").style.width = pct + "%";
  const text = document.createElement("span"); text.className = "progress"; text.dataset.percent = pct;
  text.textContent = pct + "% (" + mib(received) + " of " + mib(total) + ")";
  td.append(text);
  return td;
}
// One block per content: who asks, whom each gets it from (the origin or a device, through
// which relays), how much each holds, and the origin's share of what the swarm received.
function renderSwarms(swarms) {
  document.getElementById("swarms").replaceChildren(...swarms.map(s => {
    const block = document.createElement("div"); block.className = "swarm"; block.dataset.content = s.contentId;
    const received = s.bytesFromOrigin + s.bytesFromPeers;
    const done = s.members.filter(m => m.state === "completed").length;
    const heading = document.createElement("h3");
    heading.textContent = s.contentId.slice(0, 12) + "… · " + s.members.length + " devices, " + done + " done · origin's share "
      + (received > 0 ? (100 * s.bytesFromOrigin / received).toFixed(1) + "%" : "–") + " (" + mib(s.bytesFromOrigin) + " of " + mib(received) + ")";
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>device</th><th>gets it from</th><th>via</th><th>holds</th><th>state</th></tr></thead><tbody></tbody>";
    table.tBodies[0].replaceChildren(...s.members.map(m => {
      const tr = document.createElement("tr"); tr.className = "member"; tr.dataset.device = m.deviceId; tr.dataset.from = m.from;
      [cell(m.deviceId), cell(m.from || "–"), cell(m.via.join(", ")), bar(m.receivedBytes, m.totalBytes), cell(m.state)].forEach(c => tr.append(c));
      return tr;
    }));
    block.append(heading, table);
    return block;
  }));
}
function render(view) {
  renderSwarms(view.swarms);
  rows("transfers", view.transfers, t => [cell(t.requestId), cell(t.deviceId), cell(t.source), bar(t.receivedBytes, t.totalBytes), cell(t.state)]);
  rows("relays", view.relays, r => [cell(r.relayId), cell(r.endpoint), cell(r.forwardsFor || "the fleet"), cell(r.sessions), cell(r.state)]);
  rows("events", view.events, e => [cell(e.time.slice(11, 23)), cell(e.topic), cell(e.publisher), cell(e.requestId || "")]);
  const last = view.offload[view.offload.length - 1];
  if (last) {
    const total = last.bytesFromPeers + last.bytesFromOrigin;
    document.getElementById("offload").textContent = total > 0 ? (100 * last.bytesFromPeers / total).toFixed(1) + "%" : "–";
    document.getElementById("offload-detail").textContent = mib(last.bytesFromPeers) + " from peers, " + mib(last.bytesFromOrigin) + " from the origin";
    const points = view.offload.map((p, i) => {
      const t = p.bytesFromPeers + p.bytesFromOrigin, ratio = t > 0 ? p.bytesFromPeers / t : 0;
      return (view.offload.length > 1 ? 600 * i / (view.offload.length - 1) : 0) + "," + (78 - 76 * ratio);
    }).join(" ");
    document.getElementById("offload-chart").innerHTML = '<polyline fill="none" stroke="#2a7" stroke-width="2" points="' + points + '"/>';
  }
}
new EventSource("/v1/live").onmessage = message => render(JSON.parse(message.data));
</script>
</body>
</html>
"""#
}
