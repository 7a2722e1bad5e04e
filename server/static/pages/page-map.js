// Maps of the OGC API HTML pages (collection, items, item), drawn with the MapLibre GL JS this server serves
// and the layer's own vector tiles: nothing is fetched from another host, so the pages work on a closed network.
(function () {
  "use strict";

  const COLOUR = "#1d4ed8";

  function extend(bounds, coordinates) {
    if (typeof coordinates[0] === "number") {
      bounds[0] = Math.min(bounds[0], coordinates[0]);
      bounds[1] = Math.min(bounds[1], coordinates[1]);
      bounds[2] = Math.max(bounds[2], coordinates[0]);
      bounds[3] = Math.max(bounds[3], coordinates[1]);
    } else {
      coordinates.forEach((part) => extend(bounds, part));
    }
  }

  function boundsOf(features) {
    const bounds = [Infinity, Infinity, -Infinity, -Infinity];
    features.forEach((feature) => feature.geometry && extend(bounds, feature.geometry.coordinates));
    return bounds[0] <= bounds[2] ? bounds : null;
  }

  function drawn(id, source, sourceLayer, opacity) {
    const common = { source: source, ...(sourceLayer ? { "source-layer": sourceLayer } : {}) };
    return [
      { id: id + "-fill", type: "fill", ...common, filter: ["==", ["geometry-type"], "Polygon"],
        paint: { "fill-color": COLOUR, "fill-opacity": 0.25 * opacity } },
      { id: id + "-line", type: "line", ...common, filter: ["!=", ["geometry-type"], "Point"],
        paint: { "line-color": COLOUR, "line-width": 2, "line-opacity": opacity } },
      { id: id + "-point", type: "circle", ...common, filter: ["==", ["geometry-type"], "Point"],
        paint: { "circle-color": COLOUR, "circle-radius": 5, "circle-opacity": opacity,
                 "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } },
    ];
  }

  // options: element, base (server URL), collection (id or null), tiles (the collection has vector tiles),
  // features (GeoJSON features of the page), bbox ([w, s, e, n] or null), basemap ({url, attribution} or null)
  window.geoportalPageMap = function (options) {
    const sources = {};
    const layers = [{ id: "background", type: "background", paint: { "background-color": "#f5f5f0" } }];
    if (options.basemap && options.basemap.url) {
      sources.basemap = { type: "raster", tiles: [options.basemap.url], tileSize: 256,
                          attribution: options.basemap.attribution };
      layers.push({ id: "basemap", type: "raster", source: "basemap" });
    }
    if (options.tiles && options.collection) {
      sources.layer = { type: "vector", maxzoom: 16,
                        tiles: [options.base + "/tiles/" + options.collection + "/{z}/{x}/{y}.pbf"] };
      layers.push(...drawn("tiles", "layer", options.collection, options.features ? 0.35 : 1));
    }
    const features = (options.features || []).slice();
    if (options.bbox) {
      const [w, s, e, n] = options.bbox;
      features.push({ type: "Feature", properties: {},
                      geometry: { type: "LineString", coordinates: [[w, s], [e, s], [e, n], [w, n], [w, s]] } });
    }
    sources.page = { type: "geojson", data: { type: "FeatureCollection", features: features } };
    layers.push(...drawn("page", "page", null, 1));
    const bounds = options.bbox || boundsOf(features);
    const map = new maplibregl.Map({
      container: options.element,
      style: { version: 8, sources: sources, layers: layers },
      bounds: bounds ? [[bounds[0], bounds[1]], [bounds[2], bounds[3]]] : undefined,
      fitBoundsOptions: { padding: 30, maxZoom: 16 },
      attributionControl: options.basemap && options.basemap.url ? {} : false,
    });
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
    map.once("idle", () => {
      const shown = map.queryRenderedFeatures({ layers: ["page-fill", "page-line", "page-point"] });
      document.body.dataset.mapFeatures = String(shown.length);
      document.body.dataset.mapReady = "true";
    });
    window.geoportal = { map: map };
    return map;
  };
})();
