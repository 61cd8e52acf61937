"""The interop run (scripts/interop): Redis, Mosquitto and ChirpStack on loopback, provisioned
through ChirpStack's API, then one round of the flow (flow.py) per MQTT encoding of gatewayd.
Prints every check as it is decided and ends with "N passed, N failed"; exits 1 if any check
failed, 2 if the run could not be set up. Every process started is stopped on the way out,
also on SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chirpstack", default=os.environ.get("CHIRPSTACK_BIN"),
                   help="the ChirpStack v4 binary, SQLite build (default: $CHIRPSTACK_BIN)")
    p.add_argument("--gatewayd", required=True, help="the gatewayd binary")
    p.add_argument("--modes", default="binary,json",
                   help="gatewayd's MQTT encodings to run, in order (default: binary,json)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temp dir (configs, logs) even when every check passed")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="deadline of each wait, seconds (default: 20)")
    return p.parse_args()


def describe(e: BaseException) -> str:
    """An exception in one line: a gRPC error by its code and details, with where it came
    from in the driver."""
    where = ""
    tb = traceback.extract_tb(e.__traceback__)
    mine = [f for f in tb if Path(f.filename).parent == Path(__file__).resolve().parent]
    if mine:
        where = f" (in {mine[-1].name}, {Path(mine[-1].filename).name}:{mine[-1].lineno})"
    code, details = getattr(e, "code", None), getattr(e, "details", None)
    if callable(code) and callable(details):
        return f"ChirpStack API: {code().name}: {details()}{where}"
    return f"{type(e).__name__}: {e}{where}"


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main() -> int:
    args = parse_args()
    # After the arguments, so that --help needs none of the venv's packages.
    from flow import Context, Round
    from provision import ChirpStack
    from report import Report
    from services import Services
    from watch import Watch

    if not args.chirpstack:
        print("interop: no ChirpStack binary: set CHIRPSTACK_BIN or pass --chirpstack",
              file=sys.stderr)
        return 2
    for path, what in ((args.chirpstack, "CHIRPSTACK_BIN"), (args.gatewayd, "--gatewayd")):
        if not os.access(path, os.X_OK):
            print(f"interop: {what} {path!r} is not an executable file", file=sys.stderr)
            return 2
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or any(m not in ("binary", "json") for m in modes):
        print(f"interop: --modes {args.modes!r}: each must be binary or json", file=sys.stderr)
        return 2
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _terminate)

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="gatewayd-interop-"))
    services = Services(workdir)
    report = Report()
    watch = cs = None
    setup_failed = interrupted = None
    try:
        print(f"interop: ChirpStack {args.chirpstack}, gatewayd {args.gatewayd}, files in "
              f"{workdir}", flush=True)
        redis = services.redis()
        mqtt = services.mosquitto()
        watch = Watch(mqtt)
        chirpstack, api_port = services.chirpstack(args.chirpstack, redis, mqtt)
        print(f"interop: Redis on 127.0.0.1:{redis}, Mosquitto on 127.0.0.1:{mqtt}, "
              f"ChirpStack API on 127.0.0.1:{api_port}", flush=True)
        cs = ChirpStack(api_port)
        cs.login()
        tenant = cs.default_tenant()
        ctx = Context(
            report=report, services=services, watch=watch, cs=cs, chirpstack=chirpstack,
            gatewayd_bin=args.gatewayd, mqtt_port=mqtt, tenant=tenant,
            app=cs.create_application(tenant, "interop"),
            profile_abp=cs.create_profile(tenant, "EU868 ABP class A", otaa=False),
            profile_abp_c=cs.create_profile(tenant, "EU868 ABP class C", otaa=False,
                                            class_c=True),
            profile_otaa=cs.create_profile(tenant, "EU868 OTAA", otaa=True),
            timeout=args.timeout,
        )
        report.check("ChirpStack provisioned through its API", True,
                     f"admin login, API key, tenant {tenant}, application {ctx.app}, "
                     "3 device profiles")
        rounds = [Round(ctx, i + 1, m == "json") for i, m in enumerate(modes)]
        for r in rounds:
            r.provision()
        for r in rounds:
            report.info(f"round {r.index}: gatewayd in {r.mode} mode, gateway {r.gateway_id}")
            try:
                r.run()
            except Exception as e:  # noqa: BLE001 (the next round still runs)
                report.check(r.name("round completed"), False, describe(e))
    except Exception as e:  # noqa: BLE001 (reported, then everything is cleaned up)
        setup_failed = describe(e)
    except SystemExit as e:  # a signal (_terminate)
        interrupted = e.code
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal does not cut the clean-up
        if watch:
            watch.close()
        if cs:
            cs.close()
        services.stop_all()
    if setup_failed:
        report.check("the run completed", False, setup_failed)
    if interrupted is not None:
        report.check("the run completed", False, f"interrupted by signal {interrupted - 128}")
    print(report.summary())
    print(f"interop: took {time.monotonic() - started:.0f} s", flush=True)
    if report.failed() or args.keep:
        print(f"interop: configs and logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if interrupted is not None:
        return interrupted
    if setup_failed:
        return 2
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
