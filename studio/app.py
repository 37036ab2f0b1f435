"""Start-up: the window first, the ML stack later.

Importing torch + transformers + peft takes about 8 s here, so nothing on the path to the first
paint imports them: the window appears in well under 1.5 s and a background thread warms the
ML imports up while the user looks at it. ``--demo-steps N --screenshot PATH`` is the smoke mode:
run the demo for N steps with live plots, save a PNG of the window, exit 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

_T0 = time.perf_counter()


def parse_args(argv):
    p = argparse.ArgumentParser(prog="peft-studio studio", description="The PEFT Studio desktop app.")
    p.add_argument("run_file", nargs="?", help="a run YAML file to open")
    p.add_argument("--demo", action="store_true",
                   help="preselect the demo model and data set when there are no saved settings yet "
                        "(saved settings are kept; File > Load demo settings asks for the demo)")
    p.add_argument("--demo-steps", type=int, metavar="N",
                   help="smoke mode: run the demo for N steps, then exit (0 when it finished)")
    p.add_argument("--screenshot", metavar="PATH", help="with --demo-steps: save a PNG of the window at the end")
    p.add_argument("--output", metavar="DIR", help="with --demo-steps: the run folder (default: a temp folder)")
    p.add_argument("--timeout", type=float, default=900, help="with --demo-steps: give up after this many seconds")
    p.add_argument("--theme", choices=["system", "light", "dark"], default="system")
    p.add_argument("--tab", help="central tab to show first (Monitor, Data, …)")
    p.add_argument("--dock", help="dock to raise (Model, Method, Training, Estimate, Log)")
    p.add_argument("--wait", type=float, default=120,
                   help="--screenshot without --demo-steps: wait at most this long for the panels")
    p.add_argument("--size", default="", help="window size WxH (screenshots)")
    p.add_argument("--exit-after-show", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def launch_config(settings, demo: bool):
    """The config a launch opens with: the last session's (None: MainWindow reads it), or the demo
    when asked (``--demo``) and there is no saved state yet. ``make run`` passes --demo, so it must
    never throw the user's own setup away."""
    if demo and not settings.get("last/config"):
        from studio.demo import demo_config

        return demo_config()
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from studio import settings as settings_mod
    from studio import tasks
    from studio.theme import apply_theme

    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setOrganizationName(settings_mod.ORGANIZATION)
    app.setApplicationName(settings_mod.APPLICATION)
    app.setApplicationDisplayName("PEFT Studio")
    apply_theme(app, args.theme)
    if args.theme == "system":  # follow the desktop switching between light and dark while open
        app.styleHints().colorSchemeChanged.connect(lambda *_: apply_theme(app, "system"))
    tasks.init_bridge()

    smoke = args.demo_steps is not None
    if smoke or args.screenshot or args.exit_after_show:
        # Smoke runs and screenshots must not read or change the user's saved layout and settings.
        tmp = tempfile.mkdtemp(prefix="peft-studio-smoke-")
        settings = settings_mod.Settings(QSettings(os.path.join(tmp, "settings.ini"), QSettings.Format.IniFormat))
    else:
        settings = settings_mod.Settings()

    from engine.config import ConfigError, RunConfig
    from studio.main_window import MainWindow

    initial, load_error = None, None
    if smoke:
        from studio.demo import demo_config

        initial = demo_config(steps=args.demo_steps, out=args.output or os.path.join(tmp, "run"))
    elif args.run_file:
        try:
            initial = RunConfig.load(args.run_file)
        except ConfigError as e:
            load_error = e
    else:
        initial = launch_config(settings, demo=args.demo)
    # Re-attach on every launch (with --demo and a run file too): a run left training must show up.
    win = MainWindow(settings=settings, initial=initial, reattach=not smoke)
    if args.size:
        w, h = (int(x) for x in args.size.lower().split("x"))
        win.resize(w, h)
    elif smoke:
        win.resize(1480, 940)
    if args.tab and args.tab.lower() in win.panels:
        win.placement.show_panel(args.tab.lower())
    if args.dock and args.dock.lower() in win.placement.docks:
        win.placement.docks[args.dock.lower()].raise_()
    win.show()
    if os.environ.get("PEFT_STUDIO_TIMING"):
        print(f"studio: window shown after {time.perf_counter() - _T0:.2f} s (since studio.app import)",
              file=sys.stderr)
    if load_error is not None:
        from studio.errors import show_error

        show_error(win, "Open run file", f"{args.run_file} cannot be used.\n\n{load_error}", file_keys=True)
    if args.exit_after_show:
        QTimer.singleShot(0, app.quit)
    smoke_run = None
    if smoke:
        from studio.smoke import SmokeRun

        smoke_run = SmokeRun(win, args.screenshot, args.timeout)
        QTimer.singleShot(200, smoke_run.start)
    elif args.screenshot:
        from studio.smoke import StillShot

        still = StillShot(win, args.screenshot, args.wait)
        QTimer.singleShot(0, still.start)
    code = app.exec()
    if smoke_run is not None:
        code = smoke_run.exit_code
    if win.isVisible():
        win.shutdown()
    # Every helper process and thread ends before the interpreter does (no QThread left running).
    from studio.supervisor import wait_orphans

    tasks.shutdown()
    wait_orphans()
    return code


if __name__ == "__main__":
    sys.exit(main())
