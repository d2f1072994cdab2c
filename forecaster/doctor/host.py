"""This Python and its packages (read from the installed metadata, nothing imported), and the time zone data."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys

from forecaster.doctor.check import MODEL_STACK, Check, fail, ok, warn

DISTRIBUTION = "fingpt-slack-forecaster"
TIME_ZONE = "America/New_York"


def check_python() -> Check:
    """Which interpreter runs the product (an older one could not have imported it: pyproject asks for 3.11+)."""
    return ok("python", f"Python {'.'.join(map(str, sys.version_info[:3]))} ({sys.executable})")


def check_packages(distribution: str = DISTRIBUTION) -> list[Check]:
    """The core dependencies (all required) and the `model` extra (the worker's; optional elsewhere), read from
    the installed distribution's metadata: nothing is imported."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        requirements = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return [fail("packages", f"{distribution} is not installed in this Python ({sys.executable})",
                     "run `make install`, or `pip install -e .` in the repository")]
    core, model = [], []
    for line in requirements:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = str(requirement.marker or "")
        if not marker:
            core.append(requirement)
        elif 'extra == "model"' in marker:
            model.append(requirement)

    missing, wrong = _unmet(core)
    if missing or wrong:
        found = "; ".join(filter(None, [f"missing {', '.join(missing)}" if missing else "",
                                        f"wrong versions {', '.join(wrong)}" if wrong else ""]))
        core_check = fail("packages", f"core dependencies: {found}", "`pip install -e .` again (or `make install`)")
    else:
        core_check = ok("packages", f"{distribution} {importlib.metadata.version(distribution)}, "
                                    f"{len(core)} core dependencies present")
    missing, wrong = _unmet(model)
    if wrong:
        model_check = fail("model extra", f"wrong versions: {', '.join(wrong)}", MODEL_STACK)
    elif missing:
        model_check = warn("model extra", f"not installed (missing {', '.join(missing)}): this host cannot run "
                                          "the worker", MODEL_STACK)
    else:
        versions = ", ".join(f"{r.name} {importlib.metadata.version(r.name)}" for r in model
                             if r.name in ("torch", "transformers", "peft"))
        model_check = ok("model extra", f"installed ({versions})")
    return [core_check, model_check]


def _unmet(requirements: list) -> tuple[list[str], list[str]]:
    missing, wrong = [], []
    for requirement in requirements:
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement.name)
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            wrong.append(f"{requirement.name} {installed} (needs {requirement.specifier})")
    return missing, wrong


def check_time_zone() -> Check:
    """The scheduler and every week boundary run on New York time."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(TIME_ZONE)
    except ZoneInfoNotFoundError:
        return fail("time zone", f"{TIME_ZONE} is not available (no system zoneinfo, no tzdata package)",
                    "`pip install tzdata` (a core dependency) or install the OS tzdata package")
    source = "tzdata package" if importlib.util.find_spec("tzdata") else "system zoneinfo"
    return ok("time zone", f"{TIME_ZONE} available ({source})")
