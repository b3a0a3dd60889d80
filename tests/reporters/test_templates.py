"""Template loading (user folder, plugin package, built-ins) and robustness to missing keys."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from auditor.errors import UsageError
from auditor.interfaces import ReportOptions
from plugins.reporters.html import HtmlReporter
from auditor.reporting.environment import render_html
from report_templates import TEMPLATE_DIR

SECTIONS = ["Executive summary", "Scope and threat model", "Model and data", "Results", "Adversarial examples",
            "Recommended defenses", "Regulatory traceability", "Evaluation validity", "Reproducibility appendix"]


def headings(html: str) -> list[str]:
    return re.findall(r'<h2 class="section">([^<]*)</h2>', html)


def test_sections_in_order(results):
    assert headings(render_html(results)) == SECTIONS


def test_user_template_overrides_a_single_block(results, tmp_path):
    (tmp_path / "report.html.jinja").write_text(
        '{% extends "base.html.jinja" %}{% block recommendation %}<p id="mine">Company advice.</p>{% endblock %}')
    html = render_html(results, [tmp_path])
    assert '<p id="mine">Company advice.</p>' in html
    assert 'class="recommendation' not in html  # the built-in block is replaced
    assert headings(html) == SECTIONS  # everything else is still there


def test_user_partial_and_css_override(results, tmp_path):
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "cover.html.jinja").write_text('<header class="cover"><h1>{{ title }} by ACME</h1></header>')
    (tmp_path / "css").mkdir()
    (tmp_path / "css" / "report.css").write_text("body { color: rebeccapurple; }")
    html = render_html(results, [tmp_path])
    assert "demo-model.pt by ACME" in html and "rebeccapurple" in html
    assert "@page" in html  # print.css still comes from the built-ins


def test_override_can_extend_the_builtin_it_replaces(results, tmp_path):
    (tmp_path / "base.html.jinja").write_text(
        '{% extends "builtin/base.html.jinja" %}{% block extra_css %}.acme { color: red; }{% endblock %}')
    html = render_html(results, [tmp_path])
    assert ".acme { color: red; }" in html and headings(html) == SECTIONS


def test_plugin_template_package_sits_between_user_and_builtin(results, tmp_path, monkeypatch):
    package = tmp_path / "acme_templates"
    (package / "partials").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "partials" / "regulatory.html.jinja").write_text("<p>ACME regulatory text</p>")
    (package / "partials" / "scope.html.jinja").write_text("<p>ACME scope</p>")
    user = tmp_path / "user"
    (user / "partials").mkdir(parents=True)
    (user / "partials" / "scope.html.jinja").write_text("<p>user scope</p>")
    monkeypatch.syspath_prepend(str(tmp_path))

    class AcmeReporter(HtmlReporter):
        name = "acme-html"
        filename = "acme.html"
        template_package = "acme_templates"

    out = AcmeReporter().render(results, tmp_path, ReportOptions(template_dirs=[user]))
    html = out.read_text()
    assert "ACME regulatory text" in html  # plugin beats built-in
    assert "user scope" in html and "ACME scope" not in html  # user beats plugin
    sys.modules.pop("acme_templates", None)


def test_missing_template_dir_is_a_usage_error(results, tmp_path):
    with pytest.raises(UsageError):
        render_html(results, [tmp_path / "nope"])


@pytest.mark.parametrize("drop", ["summary", "gallery", "worst_case", "attacks", "clean", "config", "environment",
                                  "checks", "modality", "data", "model"])
def test_missing_optional_keys_do_not_crash(results, drop):
    results.pop(drop)
    html = render_html(results)
    assert "Executive summary" in html


def test_minimal_results_render():
    html = render_html({"schema_version": "1.0"})
    assert "not assessed" in html and "Not run" in html


def test_running_audit_is_marked_incomplete(results):
    results["status"] = "running"
    assert "INCOMPLETE AUDIT" in render_html(results)


def test_verdict_from_gates_and_checks_block(results):
    assert "not assessed" in render_html(results) or results.get("gates")
    results["gates"] = {"verdict": "fail", "criteria": [
        {"criterion": "worst_case@4=0.50", "label": "worst-case robust accuracy at 4/255 >= 50%",
         "passed": False, "message": "worst-case robust accuracy at 4/255 is 0.300, below 0.500"}]}
    results["checks"] = [{"id": "gradients", "name": "Gradients are informative", "status": "fail",
                          "message": "zero gradients on 12% of samples", "numbers": {"zero_fraction": 0.12}}]
    html = render_html(results)
    assert '<span class="verdict fail">fail</span>' in html
    assert "below 0.500" in html
    assert "Gradients are informative" in html and "zero_fraction = 0.12" in html


def test_checks_skipped_says_not_run(results):
    results["checks"] = {"verdict": "skipped", "reason": "turned off (--skip-checks)", "items": []}
    assert "turned off (--skip-checks)" in render_html(results)


def test_synthetic_banner_only_for_synthetic_data(results):
    assert "SYNTHETIC DATA" in render_html(results)
    results["data"]["synthetic"] = False
    assert "SYNTHETIC DATA" not in render_html(results)


def test_old_string_most_effective_attack(results):
    results["summary"]["most_effective_attack"] = "pgd"
    assert "most effective attack was <strong>PGD</strong>" in render_html(results)


def segmentation_results(results):
    results["model"]["task"] = "segmentation"
    results["config"]["task"] = "segmentation"
    results["clean"] = {"dice": 0.81, "iou": 0.7, "n": 4}
    results["attacks"] = [{"attack": "seg-pgd", "eps_255": 2, "loss": "dice", "dice": 0.4, "iou": 0.3,
                           "missed_rate": 0.5}]
    results["worst_case"] = [{"eps_255": 2, "dice": 0.4}]
    results["summary"] = {}
    return results


def test_segmentation_uses_the_partial_and_drops_classification_parts(results, tmp_path):
    results = segmentation_results(results)
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "segmentation.html.jinja").write_text(
        "<p>seg partial: {% for a in r.attacks %}{{ a.attack }} dice {{ a.dice }}{% endfor %}</p>")
    html = render_html(results, [tmp_path])
    assert "seg partial: seg-pgd dice 0.4" in html
    assert "Adversarial examples" not in html and "Table 1." not in html and "<svg" not in html
    assert "0.81" in html  # clean Dice in the summary


def test_segmentation_without_partial_still_renders(results, tmp_path, monkeypatch):
    """``include ... ignore missing``: a template set without the segmentation partial
    (an older install, a third-party template package) still renders the rest."""
    import shutil

    import auditor.reporting.environment as rendering

    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, copy)
    (copy / "partials" / "segmentation.html.jinja").unlink(missing_ok=True)
    monkeypatch.setattr(rendering, "TEMPLATE_DIR", copy)
    html = render_html(segmentation_results(results))
    assert "Reproducibility appendix" in html and "Table 1." not in html


def test_builtin_templates_are_package_data():
    names = {p.relative_to(TEMPLATE_DIR).as_posix() for p in TEMPLATE_DIR.rglob("*") if p.is_file()}
    assert {"report.html.jinja", "base.html.jinja", "css/report.css", "css/print.css"} <= names


def test_measured_defenses_are_cited_under_their_family(results):
    results["defenses"] = [{
        "name": "pgd-at", "title": "PGD-AT at 4/255", "family": "training", "source": "two audits (before/after)",
        "clean_accuracy": 0.70, "worst_case": [{"eps_255": 4, "robust_accuracy": 0.41}],
        "baseline": {"clean_accuracy": 0.78, "worst_case": [{"eps_255": 4, "robust_accuracy": 0.03}]},
        "message": "PGD-AT at 4/255 measured: worst-case accuracy at 4/255 from 3% to 41%"}]
    html = render_html(results)
    training = html[html.index("<strong>Adversarial training</strong>"):html.index("<strong>Image-level preprocessing")]
    assert "from 3% to 41%" in training
    assert "41.0% at 4/255" in html and "3.0% at 4/255" in html  # the evidence table, with and without


def test_defended_audit_is_stated_in_scope(results):
    results["defense"] = {"title": "median-3", "description": "median filter 3x3",
                          "adaptive": {"description": "BPDA through the filter"}, "verdict": "no gain"}
    html = render_html(results)
    assert "Audited with a defense in front of the model: <strong>median-3</strong>" in html
    assert "BPDA through the filter" in html


def test_numeric_class_names_read_as_classes(results):
    from tests.reporters.conftest import rename_class

    rename_class(results, "melanoma", "1")
    rename_class(results, "benign", "0")
    results["summary"]["focus_class"] = "1"
    results["clinical"]["note"] = "classes are named 0/1; class 1 is taken as the positive class"
    html = render_html(results)
    assert "of class 1 images are reported as class 0" in html
    assert "class 1 is taken as the positive class" in html


def test_template_runtime_error_is_a_one_line_input_error(results, tmp_path):
    from auditor.errors import InputError

    (tmp_path / "report.html.jinja").write_text('{% extends "base.html.jinja" %}{% block summary %}{{ 1|nofilter }}{% endblock %}')
    with pytest.raises(InputError, match="report template"):
        render_html(results, [tmp_path])
    (tmp_path / "report.html.jinja").write_text("{% if %}")
    with pytest.raises(InputError, match="report template"):
        render_html(results, [tmp_path])


def test_appendix_lists_the_plugins_that_contributed(results):
    results["provenance"] = {"plugins": [
        {"kind": "attack", "name": "sign-noise", "plugin": "signnoise", "distribution": "ext-medaudit-plugin",
         "version": "1.2.3"},
        {"kind": "model loader", "name": "torchscript", "plugin": "plugins.models", "distribution": "medaudit",
         "version": "0.1.0"}]}
    html = render_html(results)
    table = re.search(r'<table class="plugins">.*?</table>', html, re.S).group()
    rows = [re.sub(r"<[^>]+>", "|", row) for row in re.findall(r"<tr>.*?</tr>", table, re.S)[1:]]
    assert [re.sub(r"\|+", "|", row).strip("|") for row in rows] == [
        "attack|sign-noise|signnoise|ext-medaudit-plugin|1.2.3", "model loader|torchscript|plugins.models|medaudit|0.1.0"]
    del results["provenance"]
    assert "Not recorded (results written before" in render_html(results)
