#!/usr/bin/python3
"""Proves compose/compose.yaml without a Docker engine.

    python3 compose/run_local.py --bin DIR [--scale relay=3] [--scale agent=2] [--keep]

Run as root, after Scripts/compose-tools. It

1. validates the file against the compose specification (check-jsonschema's vendored schema);
2. gives every replica of every service a network namespace of its own, joined by a veth pair
   to one Linux bridge that lives in a namespace of its own, with an /etc/netns/<ns>/hosts file
   that maps each service name (and `<service>-<n>`, `ferry-<service>-<n>`) to its address, so
   `ip netns exec` gives each process compose-like name resolution;
3. starts each replica in depends_on order as `ip netns exec <ns> <bin>/<command...>` with
   exactly the environment the file gives it (plus PATH and HOME);
4. runs each service's healthcheck test the same way at its interval, starting a service only
   when the services it depends on are healthy (or started, per their condition);
5. publishes 16 MiB at the origin, has agent 1 get it (from the origin) and agent 2 get it
   (from agent 1 through a relay), compares both copies with the original, and prints one
   `compose-check: key=value` line per fact, then `compose-check: PASS` (exit 0) or
   `compose-check: FAIL reason` (exit 1);
6. always removes every process, namespace, /etc/netns entry and (without --keep) its
   temporary directory. Nothing is created in the root namespace: no interface, no route.

The one deviation from a real `docker compose up`: there is no mount namespace per service, so
each container path a service mounts a volume at (e.g. /data, /var/lib/ferry) is mapped to a
host directory under the temporary directory, by rewriting the environment values that name
a path under it. A named volume maps to one directory shared by the services that mount it (as
compose shares it); an anonymous volume to a fresh directory per replica. The processes also
run as root here rather than as the image's user, and published ports are not published.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    # `python3` on PATH may be another interpreter (pyenv, a venv): use the system one, which
    # has python3-yaml (Scripts/compose-tools installs it).
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3"):
        os.execv("/usr/bin/python3", ["/usr/bin/python3", os.path.abspath(__file__)] + sys.argv[1:])
    print("compose-check: FAIL PyYAML is missing: run Scripts/compose-tools", flush=True)
    sys.exit(1)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILE = REPO / "compose" / "compose.yaml"
CHECKER = REPO / ".venv-tools" / "bin" / "check-jsonschema"
HEALTH_LIMIT_S = 60.0     # a service that isn't healthy this long after its start fails the run
KILL_AFTER_S = 10.0       # SIGTERM, then SIGKILL after this long
ANNOUNCE_WAIT_S = 3.0     # after agent 1 holds the content, let it announce its holdings


class CheckFailed(Exception):
    """A failure to report as `compose-check: FAIL <reason>`."""


class Interrupted(Exception):
    pass


def fact(key, value):
    print(f"compose-check: {key}={value}", flush=True)


def note(line):
    print(f"run_local: {line}", file=sys.stderr, flush=True)


def duration(value, default):
    """A compose duration ("1m30s", "5s", "500ms", or a number of seconds) in seconds."""
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value)
    total, matched = 0.0, 0
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", value):
        total += float(number) * units[unit]
        matched += len(number) + len(unit)
    if matched != len(value.strip()) or matched == 0:
        raise CheckFailed(f"cannot read the duration {value!r}")
    return total


def run(cmd, check=True, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise CheckFailed(f"`{' '.join(cmd)}` failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return result


def tail(path, lines=25):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join("    | " + line for line in text.splitlines()[-lines:]) or "    | (empty log)"


class Replica:
    def __init__(self, service, index, ns, ip, port):
        self.service = service
        self.index = index
        self.ns = ns
        self.ip = ip
        self.port = port          # the veth end on the bridge (a name in the bridge namespace)
        self.name = f"{service.name}-{index}"
        self.env = {}
        self.dir = None
        self.log = None
        self.proc = None
        self.started_at = None
        self.healthy = False
        self.next_probe = None
        self.probe = None         # (Popen, started, output file)
        self.failures = 0
        self.last_probe = "no probe has run yet"


class Service:
    def __init__(self, name, spec, replicas):
        self.name = name
        self.spec = spec
        self.replica_count = replicas
        self.replicas = []
        deps = spec.get("depends_on") or {}
        if isinstance(deps, list):
            deps = {d: {"condition": "service_started"} for d in deps}
        self.depends_on = {d: (c or {}).get("condition", "service_started") for d, c in deps.items()}
        hc = spec.get("healthcheck") or {}
        test = hc.get("test")
        if hc.get("disable") or test in (None, ["NONE"], "NONE"):
            self.health = None
        else:
            if isinstance(test, str):
                test = ["CMD-SHELL", test]
            if test[0] == "CMD":
                argv = list(test[1:])
            elif test[0] == "CMD-SHELL":
                argv = ["/bin/sh", "-c", " ".join(test[1:])]
            else:
                raise CheckFailed(f"{name}: healthcheck test must start with CMD or CMD-SHELL, not {test[0]!r}")
            self.health = {
                "argv": argv,
                "interval": duration(hc.get("interval"), 30.0),
                "timeout": duration(hc.get("timeout"), 30.0),
                "retries": int(hc.get("retries", 3)),
                "start_period": duration(hc.get("start_period"), 0.0),
                "start_interval": duration(hc.get("start_interval"), 5.0),
            }
        # A one-shot (restart "no", e.g. the keys maker) runs to completion instead of serving.
        self.oneshot = str(spec.get("restart", "")) == "no"
        self.started = False

    @property
    def healthy(self):
        return self.started and all(r.healthy for r in self.replicas)

    @property
    def exited_ok(self):
        return self.started and all(r.proc and r.proc.poll() == 0 for r in self.replicas)


class Runner:
    def __init__(self, args):
        self.args = args
        self.bin = Path(args.bin).resolve()
        self.file = Path(args.file).resolve()
        self.pid = os.getpid()
        self.prefix = f"ferrycx-{self.pid}-"
        self.bridge_ns = self.prefix + "br"
        self.namespaces = []        # created (or being created), for cleanup
        self.netns_dirs = []
        self.made_etc_netns = False
        self.tmp = None
        self.services = {}
        self.order = []
        self.volumes = {}           # named volume -> host dir
        self.helpers = []           # short-lived processes (probes, CLI) still running
        self.cleaning = False

    # ---- 1. the file ------------------------------------------------------------------

    def validate(self):
        if not CHECKER.exists():
            raise CheckFailed(f"{CHECKER} is missing: run Scripts/compose-tools")
        result = run([str(CHECKER), "--builtin-schema", "vendor.compose-spec", str(self.file)], check=False)
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            raise CheckFailed("the file does not validate against the compose specification")
        fact("schema", "valid")

    def load(self):
        with open(self.file) as f:
            doc = yaml.safe_load(f)
        if doc.get("name") != "ferry":
            raise CheckFailed(f"top-level name is {doc.get('name')!r}, not 'ferry'")
        specs = doc.get("services") or {}
        for name in self.args.scale:
            if name not in specs:
                raise CheckFailed(f"--scale {name}: no such service")
        for name, spec in specs.items():
            count = self.args.scale.get(name, (spec.get("deploy") or {}).get("replicas", 1))
            if count > 1 and spec.get("container_name"):
                raise CheckFailed(f"{name} has a container_name, so it cannot be scaled")
            if count > 1:
                for p in spec.get("ports") or []:
                    host = p.get("published") if isinstance(p, dict) else (str(p).rsplit(":", 1)[0] if ":" in str(p) else None)
                    if host:
                        raise CheckFailed(f"{name} publishes host port {host}, so it cannot be scaled")
            self.services[name] = Service(name, spec, count)
        for svc in self.services.values():
            for dep, cond in svc.depends_on.items():
                if dep not in self.services:
                    raise CheckFailed(f"{svc.name} depends on unknown service {dep}")
                if cond == "service_healthy" and self.services[dep].health is None:
                    raise CheckFailed(f"{svc.name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if svc.health is None and not svc.oneshot:
                raise CheckFailed(f"{svc.name} has no healthcheck")
            if "command" not in svc.spec:
                raise CheckFailed(f"{svc.name} has no command")
        # Dependency order (depth-first, cycles refused), in file order where free.
        state = {}

        def visit(name, path):
            if state.get(name) == "done":
                return
            if state.get(name) == "visiting":
                raise CheckFailed("depends_on cycle: " + " -> ".join(path + [name]))
            state[name] = "visiting"
            for dep in self.services[name].depends_on:
                visit(dep, path + [name])
            state[name] = "done"
            self.order.append(name)

        for name in self.services:
            visit(name, [])
        fact("services", ",".join(f"{n}x{self.services[n].replica_count}" if self.services[n].replica_count > 1 else n
                                   for n in self.order))
        published = []
        for name in self.order:
            for p in self.services[name].spec.get("ports") or []:
                published.append(f"{name}:{p.get('published') if isinstance(p, dict) else str(p).split(':')[0]}")
        fact("host-ports", ",".join(published) or "none")

    # ---- 2. the network -----------------------------------------------------------------

    def network(self):
        octet = random.randint(1, 254)
        subnet = f"10.213.{octet}"
        self.namespaces.append(self.bridge_ns)
        run(["ip", "netns", "add", self.bridge_ns])
        run(["ip", "-n", self.bridge_ns, "link", "set", "lo", "up"])
        run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"])
        run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "up"])
        k = 0
        for name in self.order:
            svc = self.services[name]
            for i in range(1, svc.replica_count + 1):
                k += 1
                if k > 240:
                    raise CheckFailed("more than 240 replicas do not fit the /24")
                # Namespace names are files under /run/netns, not interfaces: only the interface
                # names (br0, eth0, p<k>) must stay within 15 characters.
                r = Replica(svc, i, f"{self.prefix}{name}-{i}", f"{subnet}.{10 + k}", f"p{k}")
                svc.replicas.append(r)
                self.namespaces.append(r.ns)
                run(["ip", "netns", "add", r.ns])
                run(["ip", "-n", r.ns, "link", "set", "lo", "up"])
                run(["ip", "-n", self.bridge_ns, "link", "add", r.port, "type", "veth", "peer", "name", "eth0", "netns", r.ns])
                run(["ip", "-n", self.bridge_ns, "link", "set", r.port, "master", "br0"])
                run(["ip", "-n", self.bridge_ns, "link", "set", r.port, "up"])
                run(["ip", "-n", r.ns, "addr", "add", f"{r.ip}/24", "dev", "eth0"])
                run(["ip", "-n", r.ns, "link", "set", "eth0", "up"])
        # Compose's DNS: the service name (replica 1 of a scaled service), <service>-<n> and the
        # container name ferry-<service>-<n>. `ip netns exec` bind-mounts /etc/netns/<ns>/hosts
        # over /etc/hosts for the process it starts.
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        for name in self.order:
            for r in self.services[name].replicas:
                names = ([name] if r.index == 1 else []) + [r.name, f"ferry-{r.name}"]
                lines.append(f"{r.ip}\t" + " ".join(names))
        hosts = "\n".join(lines) + "\n"
        etc_netns = Path("/etc/netns")
        if not etc_netns.exists():
            etc_netns.mkdir()
            self.made_etc_netns = True
        for name in self.order:
            for r in self.services[name].replicas:
                d = etc_netns / r.ns
                self.netns_dirs.append(d)
                d.mkdir()
                (d / "hosts").write_text(hosts)
        fact("network", f"{subnet}.0/24 bridge in {self.bridge_ns}, {k} namespaces")

    # ---- 3. the processes -----------------------------------------------------------------

    def volume_map(self, r):
        """Container path -> host directory for each volume this replica mounts."""
        mapping = {}
        for n, v in enumerate(r.service.spec.get("volumes") or []):
            if isinstance(v, dict):
                kind, source, target = v.get("type", "volume"), v.get("source"), v["target"]
            else:
                parts = str(v).split(":")
                if len(parts) == 1:
                    kind, source, target = "volume", None, parts[0]
                else:
                    source, target = parts[0], parts[1]
                    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            if kind == "bind":
                host = (self.file.parent / os.path.expanduser(source)).resolve()
            elif source:    # named: shared by every service and replica that mounts it
                host = self.volumes.setdefault(source, self.tmp / "volumes" / source)
            else:           # anonymous: one per replica
                host = r.dir / f"anon-{n}"
            host.mkdir(parents=True, exist_ok=True)
            mapping[target.rstrip("/") or "/"] = host
        return mapping

    def environment(self, r):
        raw = r.service.spec.get("environment") or {}
        if isinstance(raw, list):
            raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
        mapping = self.volume_map(r)
        env = {}
        for key, value in raw.items():
            if value is None:
                continue    # compose would pass the caller's value; the file gives none
            if isinstance(value, bool):
                value = "true" if value else "false"
            value = str(value)
            if "$" in value:
                raise CheckFailed(f"{r.service.name}: {key} uses interpolation, which this runner does not do")
            for target in sorted(mapping, key=len, reverse=True):
                if value == target or value.startswith(target + "/"):
                    value = str(mapping[target]) + value[len(target):]
                    break
            else:
                if value.startswith("/"):
                    raise CheckFailed(f"{r.service.name}: {key}={value} is outside every volume the service mounts; "
                                      "this runner would write it on the host")
            env[key] = value
        env["PATH"] = f"{self.bin}:/usr/local/bin:/usr/bin:/bin"
        env["HOME"] = str(r.dir)
        return env

    def resolve(self, argv, what):
        exe = argv[0]
        if "/" not in exe:
            if not (self.bin / exe).is_file():
                raise CheckFailed(f"{what}: {exe} is not in {self.bin}")
            exe = str(self.bin / exe)
        return [exe] + list(argv[1:])

    def in_ns(self, r, argv):
        return ["ip", "netns", "exec", r.ns] + argv

    def start(self, svc):
        command = svc.spec["command"]
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        argv = self.resolve(argv, f"{svc.name} command")
        for r in svc.replicas:
            r.dir = self.tmp / "replicas" / r.name
            r.dir.mkdir(parents=True)
            r.env = self.environment(r)
            r.log = self.tmp / "logs" / f"{r.name}.log"
            with open(r.log, "wb") as log:
                r.proc = subprocess.Popen(self.in_ns(r, argv), env=r.env, cwd=r.dir, stdin=subprocess.DEVNULL,
                                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            r.started_at = time.monotonic()
            h = svc.health
            if h is None:
                continue
            first = h["start_interval"] if h["start_period"] > 0 else h["interval"]
            r.next_probe = r.started_at + first
        svc.started = True
        note(f"started {svc.name} x{len(svc.replicas)}")

    # ---- 4. health ------------------------------------------------------------------------------

    def fail_replica(self, r, why):
        print(f"run_local: last lines of {r.name}'s log ({r.log}):\n{tail(r.log)}", file=sys.stderr, flush=True)
        raise CheckFailed(f"{r.name} {why}")

    def tend(self, r, now):
        h = r.service.health
        if r.proc.poll() is not None:
            self.fail_replica(r, f"exited with status {r.proc.returncode} before it was healthy")
        if r.probe:
            proc, began, out = r.probe
            code = proc.poll()
            if code is None and now - began < h["timeout"]:
                return
            if code is None:
                self.stop_helper(proc)
                code, reason = -1, f"timed out after {h['timeout']:.0f} s"
            else:
                reason = f"exit {code}"
            out.seek(0)
            text = out.read().decode("utf-8", "replace").strip().replace("\n", " / ")
            out.close()
            self.helpers.remove(proc)
            r.probe = None
            r.last_probe = f"{reason}{': ' + text[-300:] if text else ''}"
            in_start_period = now - r.started_at < h["start_period"]
            if code == 0:
                r.healthy = True
                note(f"{r.name} healthy after {now - r.started_at:.1f} s")
                return
            if not in_start_period:
                r.failures += 1
                if r.failures >= h["retries"]:
                    self.fail_replica(r, f"is unhealthy: {r.failures} failed probes in a row (last: {r.last_probe})")
            r.next_probe = now + (h["start_interval"] if in_start_period else h["interval"])
            return
        if now - r.started_at > HEALTH_LIMIT_S:
            self.fail_replica(r, f"never became healthy within {HEALTH_LIMIT_S:.0f} s (last probe: {r.last_probe})")
        if now >= r.next_probe:
            out = tempfile.TemporaryFile(dir=self.tmp)
            argv = self.resolve(h["argv"], f"{r.service.name} healthcheck")
            proc = subprocess.Popen(self.in_ns(r, argv), env=r.env, cwd=r.dir, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            self.helpers.append(proc)
            r.probe = (proc, now, out)

    def up(self):
        began = time.monotonic()
        pending = list(self.order)
        while True:
            for name in list(pending):
                svc = self.services[name]
                ready = True
                for dep, cond in svc.depends_on.items():
                    d = self.services[dep]
                    if cond == "service_healthy":
                        ready &= d.healthy
                    elif cond == "service_completed_successfully":
                        ready &= d.exited_ok
                    else:
                        ready &= d.started
                if ready:
                    pending.remove(name)
                    self.start(svc)
            now = time.monotonic()
            for name in self.order:
                for r in self.services[name].replicas:
                    if self.services[name].oneshot:
                        code = r.proc.poll() if r.proc is not None else None
                        if code not in (None, 0):
                            self.fail_replica(r, f"exited with status {code}")
                        if code is None and now - r.started_at > HEALTH_LIMIT_S:
                            self.fail_replica(r, f"did not finish within {HEALTH_LIMIT_S:.0f} s")
                        continue
                    if r.proc is not None and not r.healthy:
                        self.tend(r, now)
                    elif r.healthy and r.proc.poll() is not None:
                        self.fail_replica(r, f"exited with status {r.proc.returncode} after it was healthy")
            if not pending and all(s.exited_ok if s.oneshot else s.healthy for s in self.services.values()):
                break
            time.sleep(0.1)
        fact("healthy", ",".join(f"{n}x{len(self.services[n].replicas)}" if len(self.services[n].replicas) > 1 else n
                                  for n in self.order if not self.services[n].oneshot))
        fact("completed", ",".join(n for n in self.order if self.services[n].oneshot))
        fact("up-seconds", f"{time.monotonic() - began:.1f}")

    # ---- 5. a download through it ---------------------------------------------------------------

    def exec_in(self, r, argv, timeout):
        """`docker compose exec`: a command in the replica's namespace, with its environment."""
        argv = self.resolve(argv, "exec")
        proc = subprocess.Popen(self.in_ns(r, argv), env=r.env, cwd=r.dir, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.helpers.append(proc)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop_helper(proc)
            out, err = proc.communicate()
            raise CheckFailed(f"`{' '.join(argv)}` in {r.name} did not finish within {timeout:.0f} s: {err.strip()[-400:]}")
        finally:
            if proc.poll() is None:     # interrupted: don't leave it behind
                self.stop_helper(proc)
            self.helpers.remove(proc)
        return proc.returncode, out, err

    def broker_status(self):
        broker = self.services["broker"].replicas[0]
        code, out, err = self.exec_in(broker, ["ferry", "status", "--json"], timeout=15)
        if code != 0:
            raise CheckFailed(f"ferry status in broker failed ({code}): {err.strip()[-400:]}")
        report = json.loads(out.strip().splitlines()[0])
        return report.get("counters", report)

    def check_registrations(self):
        want_relays = len(self.services["relay"].replicas) if "relay" in self.services else 0
        want_agents = len(self.services["agent"].replicas) if "agent" in self.services else 0
        deadline = time.monotonic() + 15
        while True:
            counters = self.broker_status()
            relays = counters.get("relays") or []
            agents = counters.get("agents", 0)
            if (len(relays) >= want_relays and agents >= want_agents) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        fact("relays-registered", len(relays))
        if len(relays) != want_relays:
            raise CheckFailed(f"the broker knows {len(relays)} relays, {want_relays} are running")
        if not want_relays:
            raise CheckFailed("the file needs a relay service")
        # Each relay must advertise its own address (the default with a wildcard bind), not
        # 127.0.0.1, or devices in other containers could not reach it.
        addresses = {r.ip for r in self.services["relay"].replicas}
        endpoints = sorted(x.get("endpoint", "") for x in relays)
        fact("relay-endpoints", ",".join(endpoints))
        hosts = {re.sub(r"^tcp://([^:]+):\d+$", r"\1", e) for e in endpoints}
        if hosts != addresses:
            raise CheckFailed(f"relays advertise {endpoints}, expected their own addresses {sorted(addresses)}")
        fact("agents-registered", agents)
        if agents != want_agents:
            raise CheckFailed(f"the broker knows {agents} agents, {want_agents} are running")

    def get(self, agent, content_id, output):
        code, out, err = self.exec_in(agent, ["ferry", "get", content_id, "--agent", "tcp://127.0.0.1:7400",
                                              "--output", str(output), "--json", "--timeout", "120"], timeout=150)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise CheckFailed(f"ferry get in {agent.name} failed ({code}): {(err.strip() or out.strip())[-400:]}")
        result = json.loads(lines[-1])
        by_kind = {}
        for s in result.get("sources", []):
            by_kind[s["kind"]] = by_kind.get(s["kind"], 0) + s["bytes"]
        return result, by_kind

    def device_id(self, agent):
        """The device id an agent replica made itself, from its own status report."""
        if not hasattr(agent, "device"):
            code, out, err = self.exec_in(agent, ["ferry", "status", "--json", "--agent", "tcp://127.0.0.1:7400"], timeout=15)
            reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            ids = [x.get("id") for x in reports if x.get("service") == "agent"]
            if not ids:
                raise CheckFailed(f"ferry status --agent in {agent.name} failed ({code}): {err.strip()[-400:]}")
            agent.device = ids[0]
        return agent.device

    def download(self):
        if "origin" not in self.services or "agent" not in self.services:
            raise CheckFailed("the file needs an origin and an agent service")
        origin = self.services["origin"].replicas[0]
        agents = self.services["agent"].replicas
        content = self.tmp / "content.bin"
        size = self.args.mib * 1024 * 1024
        with open(content, "wb") as f:
            f.write(os.urandom(size))
        digest = hashlib.sha256(content.read_bytes()).hexdigest()
        code, out, err = self.exec_in(origin, ["ferry", "publish", "--quiet", "--all-devices", str(content),
                                               "--origin", "http://127.0.0.1:7080"], timeout=60)
        content_id = out.strip()
        if code != 0 or not re.fullmatch(r"[0-9a-f]{64}", content_id):
            raise CheckFailed(f"ferry publish in origin failed ({code}): {(err.strip() or out.strip())[-400:]}")
        fact("published", f"{self.args.mib}MiB id={content_id[:16]}")

        def same(path):
            return path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == digest

        # An agent writes only under its own output directory (FERRY_AGENT_OUTPUT_DIR).
        first = Path(agents[0].env["FERRY_AGENT_OUTPUT_DIR"]) / "agent-1.bin"
        result, by_kind = self.get(agents[0], content_id, first)
        if not same(first):
            raise CheckFailed("agent-1's copy differs from the original")
        if by_kind.get("origin", 0) != size:
            raise CheckFailed(f"agent-1 got {by_kind} by source, expected all {size} bytes from the origin")
        fact("download-origin", f"ok bytes={size} seconds={result.get('seconds', 0):.2f}")
        if len(agents) < 2:
            fact("download-peer", "skipped (one agent: use --scale agent=2)")
            return 1
        time.sleep(ANNOUNCE_WAIT_S)
        second = Path(agents[1].env["FERRY_AGENT_OUTPUT_DIR"]) / "agent-2.bin"
        result, by_kind = self.get(agents[1], content_id, second)
        if not same(second):
            raise CheckFailed("agent-2's copy differs from the original")
        if by_kind.get("peer", 0) != size:
            raise CheckFailed(f"agent-2 got {by_kind} by source, expected all {size} bytes from a peer")
        senders = {s.get("device") for s in result.get("sources", []) if s["kind"] == "peer"}
        names = {self.device_id(a): a.name for a in agents}
        fact("download-peer", f"ok source=peer bytes={size} seconds={result.get('seconds', 0):.2f} "
                              f"from={','.join(sorted(names.get(d, d) for d in senders))}")
        if senders != {self.device_id(agents[0])}:
            raise CheckFailed(f"agent-2 got the content from {senders}, expected agent-1 ({self.device_id(agents[0])})")
        # Which relay carried it, from the relays' own counters.
        carried = []
        for r in self.services["relay"].replicas:
            code, out, _ = self.exec_in(r, ["ferry", "status", "--json", "--relay", "tcp://127.0.0.1:7200"], timeout=15)
            reports = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            for report in reports:
                if report.get("service") == "relay":
                    forwarded = (report.get("counters") or {}).get("payloadBytesForwarded", 0)
                    if forwarded:
                        carried.append(f"{r.name}:{forwarded}")
        fact("relay-carried", ",".join(carried) or "none")
        if not carried:
            raise CheckFailed("no relay counted the peer transfer")
        return 2

    def fulfilments(self, expected):
        """The reporter delivers each download's fulfilment to the origin (http://origin:7080)."""
        origin = self.services["origin"].replicas[0]
        deadline = time.monotonic() + 30
        records = []
        while time.monotonic() < deadline:
            code, out, _ = self.exec_in(origin, ["ferry", "fulfilments", "--json", "--origin", "http://127.0.0.1:7080"], timeout=15)
            if code == 0:
                records = json.loads(out or "[]")
                if len(records) >= expected:
                    break
            time.sleep(1)
        fact("fulfilments", f"{len(records)} peer-bytes={sum(r.get('bytesFromPeers', 0) for r in records)} "
                            f"origin-bytes={sum(r.get('bytesFromOrigin', 0) for r in records)} "
                            f"verification={','.join(r.get('verification', '?') for r in records)}")
        if len(records) < expected:
            raise CheckFailed(f"the origin recorded {len(records)} fulfilments within 30 s, expected {expected}")

    # ---- 6. cleanup -------------------------------------------------------------------------------

    def stop_helper(self, proc):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def cleanup(self):
        self.cleaning = True
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for proc in list(self.helpers):
            self.stop_helper(proc)
        running = []
        for name in reversed(self.order):
            for r in self.services[name].replicas:
                if r.probe:
                    self.stop_helper(r.probe[0])
                if r.proc and r.proc.poll() is None:
                    try:
                        os.kill(r.proc.pid, signal.SIGTERM)
                        running.append(r)
                    except ProcessLookupError:
                        pass
        deadline = time.monotonic() + KILL_AFTER_S
        for r in running:
            try:
                r.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                note(f"{r.name} still running {KILL_AFTER_S:.0f} s after SIGTERM: SIGKILL")
                try:
                    os.killpg(r.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                r.proc.wait()
        # Anything else still inside one of our namespaces (only ours: every name has our prefix).
        for ns in self.namespaces:
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self.namespaces):
            run(["ip", "netns", "del", ns], check=False)
        for d in self.netns_dirs:
            shutil.rmtree(d, ignore_errors=True)
        if self.made_etc_netns:
            try:
                Path("/etc/netns").rmdir()
            except OSError:
                pass
        left = [ns for ns in run(["ip", "netns", "list"], check=False).stdout.split() if ns.startswith(self.prefix)]
        if left:
            note(f"namespaces left behind: {left}")
        if self.tmp:
            if self.args.keep:
                note(f"kept {self.tmp} (logs in {self.tmp / 'logs'})")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    def main(self):
        began = time.monotonic()
        self.validate()
        self.load()
        if not self.bin.is_dir():
            raise CheckFailed(f"--bin {self.bin} is not a directory")
        self.tmp = Path(tempfile.mkdtemp(prefix="ferry-compose-"))
        (self.tmp / "logs").mkdir()
        self.network()
        self.up()
        self.check_registrations()
        downloads = self.download()
        self.fulfilments(downloads)
        fact("seconds", f"{time.monotonic() - began:.1f}")


def main():
    parser = argparse.ArgumentParser(description="Prove compose/compose.yaml on network namespaces, without a Docker engine.")
    parser.add_argument("--bin", required=True, help="folder holding the built executables (ferry, ferry-broker, ...)")
    parser.add_argument("--scale", action="append", default=[], metavar="SERVICE=N", help="replicas of a service (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    parser.add_argument("--file", default=str(DEFAULT_FILE), help="the compose file (default: compose/compose.yaml)")
    parser.add_argument("--mib", type=int, default=16, help="size of the content to download, in MiB (default 16)")
    args = parser.parse_args()
    scale = {}
    for item in args.scale:
        name, _, n = item.partition("=")
        if not n.isdigit() or int(n) < 1:
            parser.error(f"--scale {item}: expected SERVICE=N with N >= 1")
        scale[name] = int(n)
    args.scale = scale
    if os.geteuid() != 0:
        print("compose-check: FAIL must run as root (network namespaces)", flush=True)
        return 1

    def interrupted(signum, _frame):
        if runner.cleaning:
            return
        runner.cleaning = True      # raise once; cleanup then ignores further signals
        raise Interrupted(signal.Signals(signum).name)

    runner = Runner(args)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, interrupted)
    failure = None
    try:
        runner.main()
    except CheckFailed as error:
        failure = str(error)
    except Interrupted as error:
        failure = f"interrupted by {error}"
    except Exception as error:  # noqa: BLE001 - anything else is a failure too, with cleanup
        import traceback
        traceback.print_exc()
        failure = f"{type(error).__name__}: {error}"
    finally:
        try:
            runner.cleanup()
        except Exception as error:  # noqa: BLE001
            failure = failure or f"cleanup: {error}"
    if failure:
        print(f"compose-check: FAIL {failure}", flush=True)
        return 1
    print("compose-check: PASS", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
