"""The wheel is one import namespace: built, installed in a fresh virtual environment, and used
from a folder that has its own `tools.py`, `agent.py`, `graphs.py` and `sandbox.py`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"agent": "harmonygraph", "tools": "harmonygraph.tools",
           "graphs": "harmonygraph.graphs", "sandbox": "harmonygraph.sandbox"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {name: folder for folder, name in FOLDERS.items()}
    found = set()
    for folder, name in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *rel)))
    assert found == set(config["packages"])


def test_the_source_imports_only_the_namespace() -> None:
    """No module reaches the folders by their bare names (they are not installed)."""
    bare = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                words = line.split()
                if len(words) >= 2 and words[0] in ("from", "import"):
                    if words[1].split(".")[0] in FOLDERS:
                        bare.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bare, "\n".join(bare)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (whl,) = out.glob("harmonygraph-*.whl")
    return whl


def test_the_wheel_claims_only_harmonygraph(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"harmonygraph"}
    for data in ("harmonygraph/graphs/survey_demo/demo_trace.jsonl",
                 "harmonygraph/graphs/survey_demo/responses.csv",
                 "harmonygraph/graphs/render/templates/page.html.j2",
                 "harmonygraph/sandbox/Dockerfile", "harmonygraph/sandbox/kernel.py"):
        assert data in names
    assert any(n.startswith("harmonygraph/graphs/survey_demo/frameworks/") for n in names)


def test_a_user_project_with_its_own_tools_module_runs_the_installed_wheel(
    wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    # The dependencies come from this interpreter's site-packages; harmonygraph itself only
    # from the wheel (a venv's own site-packages comes first on sys.path).
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
         "--no-index", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    project = tmp_path / "project"
    project.mkdir()
    for name in ("tools", "agent", "graphs", "sandbox"):
        (project / f"{name}.py").write_text(f"WHO = 'the user project {name}'\n")
    script = (
        "import json, tools, agent\n"
        "from harmonygraph import Agent, tool\n"
        "import harmonygraph\n"
        "print(json.dumps({'tools': tools.WHO, 'agent': agent.WHO,\n"
        "                  'hg': harmonygraph.__file__, 'Agent': Agent.__name__}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([str(python), "-c", script], cwd=project, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    seen = json.loads(res.stdout)
    assert seen["tools"] == "the user project tools" and seen["agent"] == "the user project agent"
    assert seen["hg"].startswith(str(env_dir)) and seen["Agent"] == "Agent"

    env["HARMONYGRAPH_HOME"] = str(tmp_path / "home")
    demo = subprocess.run(
        [str(env_dir / "bin" / "harmonygraph"), "demo", "--out", "report", "--json"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )
    assert demo.returncode == 0, demo.stderr[-3000:] + demo.stdout[-2000:]
    pdf = project / json.loads(demo.stdout)["report"]["pdf"]  # relative to where it ran
    assert pdf.is_file() and pdf.resolve().is_relative_to(project.resolve())
