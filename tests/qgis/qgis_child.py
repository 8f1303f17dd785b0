"""Run by QGIS's own Python (``/usr/bin/python3``), not the project's: init QGIS and Processing headless,
register the plugin from a folder, run one algorithm and print what the test checks as one JSON line
(``RESULT {...}``). Imports only QGIS and the standard library, as the plugin does.

Usage: ``python3 qgis_child.py JOB.json`` with ``{"plugin_dir", "engine", "algorithm", "parameters",
"cancel_after_progress", "layer", "layers", "load", "diagnostics"}``. ``layers`` maps a name to
``[uri, provider]`` of a raster layer added to the project, which a parameter value ``"@name"`` stands
for; ``load`` runs with ``processing.runAndLoadResults``, as the toolbox does."""

from __future__ import annotations

import json
import os
import sys


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _layer_facts(uri: str) -> dict:
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(uri, "out", "ogr")
    return {
        "valid": layer.isValid(),
        "fields": [f.name() for f in layer.fields()],
        "count": layer.featureCount(),
        "wkt": sorted(f.geometry().asWkt(3) for f in layer.getFeatures()),
        "labels": layer.labelsEnabled(),
        "renderer": layer.renderer().type() if layer.renderer() else None,
    }


class _Iface:
    """The part of QGIS's ``iface`` the plugin uses, recording the Plugins menu."""

    def __init__(self) -> None:
        from qgis.PyQt.QtWidgets import QMainWindow

        self.window = QMainWindow()
        self.menu: list[tuple[str, str]] = []

    def mainWindow(self):
        return self.window

    def addPluginToMenu(self, menu, action):
        self.menu.append((menu, action))

    def removePluginMenu(self, menu, action):
        self.menu.remove((menu, action))


def _diagnostics(plugin, iface: _Iface) -> int:
    """Trigger Plugins ▸ rsvg ▸ Diagnostics; report the menu and the window it opened."""
    entries = [(menu, action.text()) for menu, action in iface.menu]
    iface.menu[0][1].trigger()
    dialog = plugin.dialog
    shown = {
        "menu": entries,
        "window": type(dialog).__name__,
        "visible": dialog.isVisible(),
        "text": dialog.text,
    }
    from processing.core.ProcessingConfig import ProcessingConfig

    setting = ProcessingConfig.settings["RSVG_ENGINE"]  # Processing ▸ Options ▸ Providers ▸ rsvg
    shown["setting"] = {"group": setting.group, "value": setting.value}
    plugin.unload()
    print("RESULT " + json.dumps({**shown, "menu_after_unload": len(iface.menu)}), flush=True)
    return 0


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

    app = QgsApplication([], bool(job.get("diagnostics")))  # the Diagnostics window needs widgets
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    sys.path.insert(0, job["plugin_dir"])
    import processing
    from processing.core.Processing import Processing
    from processing.core.ProcessingConfig import ProcessingConfig

    Processing.initialize()
    import rsvg_qgis

    iface = _Iface() if job.get("diagnostics") else None
    plugin = rsvg_qgis.classFactory(iface)
    plugin.initGui()
    ProcessingConfig.setSettingValue("RSVG_ENGINE", job.get("engine", ""))
    if iface is not None:
        return _diagnostics(plugin, iface)
    lines: list[str] = []
    from qgis.core import QgsProject, QgsRasterLayer

    for key, (uri, provider) in job.get("layers", {}).items():  # project layers, named "@key" in parameters
        layer = QgsRasterLayer(uri, key, provider)
        if not layer.isValid():
            print("RESULT " + json.dumps({"exception": f"test layer {key} is not valid: {uri}"}), flush=True)
            return 1
        QgsProject.instance().addMapLayer(layer)
        for name, value in job["parameters"].items():
            if value == f"@{key}":
                job["parameters"][name] = layer.id()

    class Feedback(QgsProcessingFeedback):
        def setProgress(self, percent):
            super().setProgress(percent)
            if job.get("cancel_after_progress") and percent > 0:
                self.cancel()

        def pushInfo(self, text):
            lines.append(f"info: {text}")

        def pushWarning(self, text):
            lines.append(f"warning: {text}")

        def pushConsoleInfo(self, text):
            lines.append(f"console: {text}")

    result: dict = {}
    try:
        run = processing.runAndLoadResults if job.get("load") else processing.run
        result["results"] = run(job["algorithm"], job["parameters"], feedback=Feedback())
    except QgsProcessingException as exc:
        result["exception"] = str(exc)
    result["log"] = lines
    result["children"] = _children(os.getpid())
    pids = [int(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("info: engine process ")]
    result["engine_alive"] = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    result["project"] = [
        {"source": layer.source(), "labels": layer.labelsEnabled()}
        for layer in QgsProject.instance().mapLayers().values()
        if layer.type() == layer.VectorLayer
    ]
    if job.get("layer") and "results" in result:
        result["layer"] = _layer_facts(job["layer"].format(**result["results"]))
    print("RESULT " + json.dumps(result), flush=True)
    plugin.unload()
    app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
