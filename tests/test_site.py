"""The site's metadata: one citation source, licences, and the offline plotly set-up in _quarto.yml."""

from __future__ import annotations

import tomllib

import yaml

from pooling.build import PROJECT_ROOT, quarto_config


def test_citation_cff_and_quarto_agree():
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text())
    quarto = quarto_config()
    assert citation["title"] == quarto["website"]["title"] == quarto["citation"]["container-title"]
    assert [(a["given-names"], a["family-names"]) for a in citation["authors"]] == [
        (a["name"]["given"], a["name"]["family"]) for a in quarto["author"]
    ]
    assert str(citation["version"]) == str(quarto["version"])
    assert str(citation["date-released"]) == str(quarto["date"])
    assert citation["license"] == "CC-BY-4.0" and quarto["license"] == "CC BY"
    assert quarto["google-scholar"] is True


def test_versions_agree():
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    citation = yaml.safe_load((PROJECT_ROOT / "CITATION.cff").read_text())
    assert project["version"] == str(citation["version"])


def test_licences_are_stated():
    assert "MIT License" in (PROJECT_ROOT / "LICENSE").read_text()
    assert "CC BY 4.0" in (PROJECT_ROOT / "LICENSE").read_text()
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "MIT" in readme and "CC BY 4.0" in readme


def test_plotly_is_served_by_the_site():
    project = quarto_config()["project"]
    assert "assets/plotly.min.js" in project["resources"]
    assert "pooling.build asset" in project["pre-render"]
    assert quarto_config()["project"]["type"] == "website"
