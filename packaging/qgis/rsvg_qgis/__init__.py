"""rsvg for QGIS: a Processing provider that runs the installed ``rsvg`` engine (GeoChat) as a child
process. It imports only QGIS, Qt and the standard library: no torch inside QGIS (docs/qgis.md)."""


def classFactory(iface):
    from .plugin import RsvgPlugin

    return RsvgPlugin(iface)
