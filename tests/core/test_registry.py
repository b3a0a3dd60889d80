"""Plugin loading: built-ins through the same path as third parties, entry points,
MEDAUDIT_PLUGINS, duplicate names, and a meta-test that every hook is exercised."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from auditor import hookspecs
from auditor.errors import PluginError
from auditor.hookspecs import hookimpl
from auditor.registry import load_registry

REPO = Path(__file__).resolve().parents[2]

EXTERNAL_PLUGIN = '''
"""A third-party medaudit plugin: one attack, uniform sign noise at the eps boundary."""
import torch
from auditor.hookspecs import hookimpl
from auditor.interfaces import Attack, AttackResult


class SignNoise(Attack):
    name = "sign-noise"
    title = "Random sign noise (third-party example)"
    threat_model = "black-box"
    cost = 5
    backends = ("native",)
    default_backend = "native"

    def parameters(self, budget, ctx):
        return {"norm": "linf", "draws": 1}

    def run(self, ctx, x, y, eps, params):
        gen = torch.Generator().manual_seed(params["seed"])
        noise = torch.randint(0, 2, x.shape, generator=gen).float() * 2 - 1
        return AttackResult((x + eps * noise.to(x.device)).clamp(0, 1))


@hookimpl
def medaudit_register_attacks(register):
    register(SignNoise())
'''


def install_external_plugin(root: Path, module: str = "ext_medaudit_plugin", ep_name: str = "signnoise") -> Path:
    """A real installed distribution: module + dist-info with an entry point in group medaudit."""
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(EXTERNAL_PLUGIN)
    info = site / "ext_medaudit_plugin-1.2.3.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ext-medaudit-plugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[medaudit]\n{ep_name} = {module}\n")
    (info / "RECORD").write_text("")
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def test_builtins_register_every_kind():
    registry = load_registry()
    for kind in hookspecs.REGISTRY_HOOKS:
        assert kind in registry.components
    assert {p["origin"] for p in registry.plugins} >= {"built-in"}
    assert registry.provider("attacks", "pgd") == "plugins.attacks"
    assert registry.provider("modalities", "dermoscopy") == "plugins.modalities"
    assert registry.names("model_loaders")[:1] == ["torchscript"]


def test_every_hook_has_a_builtin_or_test_implementation():
    """datasette-style meta-test: a hook nobody implements is an untested hook."""
    import importlib

    from plugins import BUILTIN_PLUGINS

    implemented = set()
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        implemented |= {n for n in dir(module) if n.startswith("medaudit_")}
    assert set(hookspecs.REGISTRY_HOOKS.values()) <= implemented


def test_duplicate_names_name_both_plugins():
    class Clash:
        __name__ = "clashing_plugin"

        @hookimpl
        def medaudit_register_attacks(self, register):
            from plugins.attacks.fgsm import FGSM

            register(FGSM())

    with pytest.raises(PluginError) as err:
        load_registry(extra_plugins=[Clash()])
    assert "plugins.attacks" in str(err.value) and "clashing_plugin" in str(err.value)
    assert "'fgsm'" in str(err.value)


def test_external_plugin_discovered_through_entry_point_and_used_by_run(tmp_path, demo_inputs):
    site = install_external_plugin(tmp_path)
    listed = subprocess.run([sys.executable, "-m", "auditor.cli", "plugins", "--json"], env=_env(site),
                            capture_output=True, text=True, check=True)
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["signnoise"]["registered"] == {"attacks": ["sign-noise"]}
    assert plugins["signnoise"]["version"] == "1.2.3"

    model, data = demo_inputs
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "auditor.cli", "run", str(model), "--data", str(data), "--input-size", "32",
         "--attacks", "sign-noise,fgsm", "--eps", "8", "--out", str(out), "--report-format", "none", "--quiet", "--skip-checks"],
        env=_env(site), capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((out / "results.json").read_text())
    assert [a["attack"] for a in results["attacks"]] == ["sign-noise", "fgsm"]  # cost 5 runs first
    assert results["attacks"][0]["params"]["draws"] == 1
    provenance = {(p["kind"], p["name"]): p for p in results["provenance"]["plugins"]}
    assert provenance[("attack", "sign-noise")] == {"kind": "attack", "name": "sign-noise", "plugin": "signnoise",
                                                    "distribution": "ext-medaudit-plugin", "version": "1.2.3"}
    assert provenance[("model loader", "torchscript")]["distribution"] == "medaudit"
    assert {("data source", "folder"), ("modality", "dermoscopy"), ("attack", "fgsm")} <= set(provenance)


def test_medaudit_plugins_env_var_restricts_third_party(tmp_path):
    site = install_external_plugin(tmp_path)
    for value, expected in (("", False), ("signnoise", True), ("someother", False)):
        listed = subprocess.run([sys.executable, "-m", "auditor.cli", "plugins", "--json"],
                                env=_env(site, MEDAUDIT_PLUGINS=value), capture_output=True, text=True, check=True)
        names = {p["name"] for p in json.loads(listed.stdout)}
        assert ("signnoise" in names) is expected, value
        assert "plugins.attacks" in names  # built-ins always load


def test_broken_third_party_plugin_is_a_clear_error(tmp_path):
    site = install_external_plugin(tmp_path, module="missing_module_xyz", ep_name="broken")
    (site / "missing_module_xyz.py").unlink()
    listed = subprocess.run([sys.executable, "-m", "auditor.cli", "plugins"], env=_env(site),
                            capture_output=True, text=True)
    assert listed.returncode == 2
    assert "cannot load plugin 'broken'" in listed.stderr
    assert "Traceback" not in listed.stderr


def test_provenance_names_the_plugin_distribution_and_version_of_each_component_used():
    from auditor import __version__

    registry = load_registry().for_audit()
    registry.get("attacks", "pgd")
    registry.get("model_loaders", "torchscript")
    registry.note("data_sources", "folder")
    registry.note("data_sources", "no-such-source")  # unknown names are not invented into the record
    used = registry.provenance(extra=[("reporters", "html")])
    assert [(p["kind"], p["name"]) for p in used] == [
        ("attack", "pgd"), ("model loader", "torchscript"), ("data source", "folder"), ("reporter", "html")]
    assert used[0] == {"kind": "attack", "name": "pgd", "plugin": "plugins.attacks",
                       "distribution": "medaudit", "version": __version__}
    assert registry.for_audit().provenance() == []  # a fresh audit starts with an empty record
