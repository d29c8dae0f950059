"""Start the app: ``python -m app [--host 127.0.0.1] [--port 7860] [--share] [--auth U:P]``."""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m app", description="TGD research app")
    ap.add_argument("--host", default=os.environ.get("TGD_APP_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("TGD_APP_PORT", "7860")))
    ap.add_argument("--share", action="store_true", help="create a public gradio.live link")
    ap.add_argument("--auth", help="USER:PASSWORD required to open the app")
    args = ap.parse_args()
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    if args.auth and len(auth) != 2:
        ap.error("--auth takes USER:PASSWORD")

    from app.ui import allowed_paths, build_app

    demo = build_app()
    demo.queue(default_concurrency_limit=4)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                allowed_paths=allowed_paths(), max_file_size="20mb", show_error=True)


if __name__ == "__main__":
    main()
