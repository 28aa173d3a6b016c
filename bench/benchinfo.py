"""What machine a benchmark ran on, for its results file.

    from benchinfo import cpu_description   # bench/ is on sys.path for bench scripts
    cpu_description()   # "2-core CPU (AMD EPYC ...)"
    write_results(res, "bench/results/x", markdown_lines)   # x.json and x.md
"""
import os
import platform
import subprocess


def cpu_model() -> str:
    """The CPU's model name from ``lscpu`` (``platform.processor()`` as a fallback)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        out = ""
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def cpu_description() -> str:
    return f"{os.cpu_count()}-core CPU ({cpu_model()})"


def write_results(res: dict, out: str, lines) -> None:
    """``<out>.json`` (``res``) and ``<out>.md`` (the markdown ``lines``), their folder made."""
    import json
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {out}.md and .json")
