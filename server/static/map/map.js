// The geoportal web map: layers grouped by domain, a time slider, popups in Russian, a legend.
// Everything it needs comes from /map/config.json, which the server renders from the layer catalog.
"use strict";

const HOUR = 3600 * 1000;

function iso(ms) {
  // Same text form as the stored datetimes ("2026-11-24T10:00:00.000Z"), so strings compare as times.
  return new Date(ms).toISOString();
}

function activeDuring(layer, fromIso, toIso) {
  // Active at some moment of [from, to]: started by its end and not ended before its start.
  const started = ["<=", ["to-string", ["get", layer.temporal.start]], toIso];
  if (!layer.temporal.end) return started;
  const end = ["to-string", ["get", layer.temporal.end]];
  return ["all", started, ["any", ["!", ["has", layer.temporal.end]], [">=", end, fromIso]]];
}

function formatValue(field, value) {
  if (value === undefined || value === null || value === "") return "—";
  if (field.type === "datetime") return new Date(value).toLocaleString("ru-RU", { timeZone: window.geoportal.config.timezone });
  if (field.type === "boolean") return value === true || value === 1 || value === "true" ? "да" : "нет";
  if (field.labels && field.labels[value]) return field.labels[value];
  return String(value);
}

function popupHtml(layer, properties) {
  const rows = layer.fields
    .map((f) => `<tr><th>${f.title}</th><td>${formatValue(f, properties[f.name])}</td></tr>`)
    .join("");
  const div = document.createElement("div");
  div.innerHTML = `<h3>${layer.title}</h3><table>${rows}</table>`;
  return div;
}

async function start() {
  const config = await (await fetch("config.json")).json();
  const layersById = Object.fromEntries(config.layers.map((l) => [l.id, l]));
  document.getElementById("city-title").textContent = config.title;
  document.title = `${config.title} — геопортал`;

  const map = new maplibregl.Map({ container: "map", style: config.style, bounds: config.bounds,
                                   fitBoundsOptions: { padding: 20 }, attributionControl: { compact: true } });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  const api = { map, config, time: null };
  window.geoportal = api;
  await new Promise((resolve) => map.once("load", resolve));

  if (config.raster) {
    map.addSource(config.raster.id, { type: "image", url: config.raster.url, coordinates: config.raster.coordinates });
    // above the zone fills, below every line and point: the load reads as a heat layer under the events
    const firstVector = map.getStyle().layers.find((l) => l.metadata && l.metadata["geoportal:layer"] && l.type !== "fill");
    map.addLayer({ id: config.raster.id, type: "raster", source: config.raster.id,
                   layout: { visibility: "none" }, paint: { "raster-opacity": 0.7 } }, firstVector && firstVector.id);
  }

  // style layers of each catalog layer, with the filter the style gave them
  const styleLayers = {};
  for (const styleLayer of map.getStyle().layers) {
    const id = styleLayer.metadata && styleLayer.metadata["geoportal:layer"];
    if (!id) continue;
    (styleLayers[id] = styleLayers[id] || []).push({ id: styleLayer.id, filter: styleLayer.filter });
  }

  function setVisible(layerId, visible) {
    const targets = styleLayers[layerId] || (config.raster && layerId === config.raster.id ? [{ id: layerId }] : []);
    for (const target of targets) map.setLayoutProperty(target.id, "visibility", visible ? "visible" : "none");
  }

  function applyTime(fromMs, toMs) {
    api.time = fromMs === null ? null : { from: iso(fromMs), to: iso(toMs) };
    for (const [layerId, targets] of Object.entries(styleLayers)) {
      const layer = layersById[layerId];
      if (!layer || !layer.temporal) continue;
      for (const target of targets) {
        const parts = [target.filter, api.time && activeDuring(layer, api.time.from, api.time.to)].filter(Boolean);
        map.setFilter(target.id, parts.length === 0 ? null : parts.length === 1 ? parts[0] : ["all", ...parts]);
      }
    }
    const label = document.getElementById("time-label");
    label.textContent = api.time === null ? "все события"
      : fromMs === toMs ? new Date(fromMs).toLocaleString("ru-RU", { timeZone: config.timezone })
      : `${new Date(fromMs).toLocaleDateString("ru-RU")} – ${new Date(toMs).toLocaleDateString("ru-RU")}`;
  }

  // layer list grouped by domain, the legend beside
  const list = document.getElementById("layers");
  const legend = document.getElementById("legend");
  for (const domain of config.domains) {
    const members = config.layers.filter((l) => l.domain === domain.id);
    if (!members.length) continue;
    list.insertAdjacentHTML("beforeend", `<h2>${domain.title}</h2>`);
    for (const layer of members) {
      const row = document.createElement("label");
      row.className = "layer";
      row.innerHTML = `<input type="checkbox" data-layer="${layer.id}" ${layer.visible ? "checked" : ""}>` +
        `<span class="swatch" style="background:${layer.legend[0].color}"></span>${layer.title}`;
      row.querySelector("input").addEventListener("change", (e) => setVisible(layer.id, e.target.checked));
      list.appendChild(row);
      setVisible(layer.id, layer.visible);
      legend.insertAdjacentHTML("beforeend", `<h2>${layer.title}</h2>` + layer.legend.map((entry) =>
        `<div class="legend-entry"><span class="swatch ${entry.dashed ? "dashed" : ""}" style="background-color:${entry.color}"></span>` +
        `${entry.label || layer.title}</div>`).join(""));
    }
  }
  if (config.raster) {
    list.insertAdjacentHTML("beforeend", `<h2>Аналитика</h2><label class="layer"><input type="checkbox" data-layer="${config.raster.id}">` +
      `<span class="swatch" style="background:linear-gradient(90deg,#fde68a,#dc2626)"></span>${config.raster.title}</label>`);
    list.querySelector(`[data-layer="${config.raster.id}"]`).addEventListener("change", (e) => setVisible(config.raster.id, e.target.checked));
  }

  // the time slider: hours between the earliest and the latest event, starting at "now"
  const slider = document.getElementById("time-slider");
  const min = Date.parse(config.time.min), max = Date.parse(config.time.max);
  const now = Math.min(Math.max(Date.parse(config.time.now), min), max);
  slider.min = min / 1000; slider.max = max / 1000; slider.value = now / 1000;
  slider.addEventListener("input", () => applyTime(slider.value * 1000, slider.value * 1000));
  document.getElementById("time-now").addEventListener("click", () => { slider.value = now / 1000; applyTime(now, now); });
  document.getElementById("time-week").addEventListener("click", () => {
    const day = new Date(now); const monday = now - ((day.getUTCDay() + 6) % 7) * 24 * HOUR;
    applyTime(monday - (monday % (24 * HOUR)), monday - (monday % (24 * HOUR)) + 7 * 24 * HOUR - 1000);
  });
  document.getElementById("time-all").addEventListener("click", () => applyTime(null, null));
  api.setTime = (isoText) => { const ms = Date.parse(isoText); slider.value = ms / 1000; applyTime(ms, ms); };
  api.setInterval = (fromIso, toIso) => applyTime(Date.parse(fromIso), Date.parse(toIso));
  api.showAll = () => applyTime(null, null);
  applyTime(now, now);

  // popups: the layer's public fields with their Russian titles
  const clickable = Object.values(styleLayers).flat().map((t) => t.id).filter((id) => !id.endsWith("-label"));
  map.on("click", (event) => {
    const features = map.queryRenderedFeatures(event.point, { layers: clickable });
    if (!features.length) return;
    const feature = features[0];
    const layer = layersById[feature.layer.metadata["geoportal:layer"]];
    new maplibregl.Popup({ maxWidth: "360px" }).setLngLat(event.lngLat).setDOMContent(popupHtml(layer, feature.properties)).addTo(map);
  });
  for (const id of clickable) {
    map.on("mouseenter", id, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
  }
  api.ready = true;
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  console.error(error);
  document.body.dataset.error = String(error);
});
