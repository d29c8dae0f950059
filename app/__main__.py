"""Start the app: ``python -m app [--host 127.0.0.1] [--port 7860] [--share] [--auth U:P]
[--allow-public-without-auth]``.

Anyone who can open the app can queue jobs on this machine and download their checkpoints, so
serving it beyond this machine (a non-loopback ``--host``, or ``--share``) needs a password
(``--auth USER:PASSWORD`` or ``TGD_APP_AUTH``), or ``--allow-public-without-auth`` to say so
on purpose (a loud warning follows). Otherwise it exits with status 2.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ALLOW_FLAG = "--allow-public-without-auth"
LOCAL_NAMES = ("localhost", "localhost.")


class PublicWithoutAuth(Exception):
    """The app would be reachable from other machines without a password, unasked."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can connect."""
    name = host.strip().strip("[]").lower()
    if name in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:  # a host name (may resolve to anything) or "" (every interface)
        return False


def public_reason(host: str, share: bool) -> str | None:
    """Why the app would be reachable from other machines, or None."""
    if share:
        return "--share publishes it on a public gradio.live link"
    if not is_loopback(host):
        return f"--host {host or '(empty)'} is not a loopback address"
    return None


def check_exposure(host: str, share: bool, auth: bool, allow_public: bool) -> str:
    """The warning to print before starting ('' for none); raises :class:`PublicWithoutAuth`
    (one line: the problem and the two ways out) when the app would be public without a
    password and ``allow_public`` was not given."""
    reason = public_reason(host, share)
    if reason is None or auth:
        return ""
    if not allow_public:
        raise PublicWithoutAuth(
            f"python -m app: refusing to serve without a password: {reason}; add --auth "
            f"USER:PASSWORD (or set TGD_APP_AUTH), or {ALLOW_FLAG} if anyone who can reach "
            "the port may use it")
    bar = "!" * 78
    return "\n".join([
        bar, f"WARNING: the TGD app is PUBLIC and has NO PASSWORD ({reason}).",
        "Anyone who can reach this port can queue training jobs on this machine, use its",
        "CPUs/GPUs and disk, and download the jobs' checkpoints, logs and exported models.",
        "Use --auth USER:PASSWORD (or TGD_APP_AUTH) behind a reverse proxy with TLS instead.",
        bar])


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """``USER:PASSWORD`` as a pair (None for no value); ValueError when malformed."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise ValueError("--auth takes USER:PASSWORD (both non-empty)")
    return user, password


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m app", description="TGD research app")
    ap.add_argument("--host", default=os.environ.get("TGD_APP_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("TGD_APP_PORT", "7860")))
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link")
    ap.add_argument("--auth", default=os.environ.get("TGD_APP_AUTH"),
                    help="USER:PASSWORD required to open the app (default: $TGD_APP_AUTH)")
    ap.add_argument(ALLOW_FLAG, dest="allow_public", action="store_true",
                    help="serve on a non-loopback host or --share without --auth (warns)")
    args = ap.parse_args(argv)
    try:
        auth = parse_auth(args.auth)
        warning = check_exposure(args.host, args.share, auth is not None, args.allow_public)
    except ValueError as exc:
        ap.error(str(exc))
    except PublicWithoutAuth as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    if warning:
        print(warning, file=sys.stderr, flush=True)

    from app.ui import build_app, launch_options, warm_up_in_background

    demo = build_app()
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                show_error=True, prevent_thread_lock=True, **launch_options())
    warm_up_in_background()  # the cubical kernels, once the server answers
    demo.block_thread()


if __name__ == "__main__":
    main()
