// The geoportal web map: layers grouped by domain, a time slider, popups, a legend, in Russian or English.
// Everything it needs comes from /map/config.json, which the server renders from the layer catalog; where the
// events are in time it asks the features API, so "active at" means here what it means there.
"use strict";

const HOUR = 3600 * 1000;
const LANGUAGES = ["ru", "en"];
const UI = {
  ru: {
    page: "Геопортал — оперативная обстановка", portal: "геопортал", showAt: "Показать на момент:",
    now: "Сейчас", week: "Эта неделя", all: "Все события", allEvents: "все события", layers: "Слои",
    legend: "Легенда", map: "Карта", analytics: "Аналитика", yes: "да", no: "нет",
    latest: "Сейчас событий нет: показан последний момент с событиями",
    next: "Сейчас событий нет: показан ближайший момент с событиями",
    search: "Найти", searchHint: "Адрес: ул. Ленина, 5А", searchLabel: "Что происходит у дома", sheet: "Слои и легенда",
    noMatch: "Адрес не найден в адресном реестре", didYouMean: "Возможно, вы имели в виду:", nothingNear: "Рядом ничего не происходит",
    whoAnswers: "Кто отвечает за адрес", active: "идёт", upcoming: "запланировано", openEnd: "без даты окончания",
    here: "прямо здесь", metres: "м", unavailable: "Сейчас не удалось прочитать",
  },
  en: {
    page: "Geoportal — current situation", portal: "geoportal", showAt: "Show the moment:",
    now: "Now", week: "This week", all: "All events", allEvents: "all events", layers: "Layers",
    legend: "Legend", map: "Map", analytics: "Analysis", yes: "yes", no: "no",
    latest: "Nothing is going on now: showing the latest moment with events",
    next: "Nothing is going on now: showing the next moment with events",
    search: "Search", searchHint: "Address: ul. Lenina, 5A", searchLabel: "What affects an address", sheet: "Layers and legend",
    noMatch: "The address is not in the address register", didYouMean: "Did you mean:", nothingNear: "Nothing is going on nearby",
    whoAnswers: "Who answers for this address", active: "active", upcoming: "upcoming", openEnd: "no end date",
    here: "right here", metres: "m", unavailable: "Could not be read now",
  },
};

function browserLanguage(tags) {
  // The first of the browser's languages we have texts for, with its full tag for dates ("en-US"); else English.
  for (const tag of tags || []) {
    const language = String(tag).toLowerCase().split("-")[0];
    if (LANGUAGES.includes(language)) return { language, locale: tag };
  }
  return { language: "en", locale: "en" };
}

const { language: LANG, locale: LOCALE } = browserLanguage(navigator.languages || [navigator.language]);
const T = UI[LANG];

function text(value) {
  // A catalog text is {ru, en}; a missing language falls back to the other one.
  if (value === null || value === undefined || typeof value === "string") return value;
  return value[LANG] || LANGUAGES.map((l) => value[l]).find(Boolean);
}

function iso(ms) {
  // Same text form as the stored datetimes ("2026-11-24T10:00:00.000Z"), so strings compare as times.
  return new Date(ms).toISOString();
}

function activeDuring(layer, fromIso, toIso) {
  // Active at some moment of [from, to] as the features API has it (layers/timewindow.py): started by its end
  // and not ended before its start; a layer without an end field holds instants.
  const start = ["to-string", ["get", layer.temporal.start]];
  const started = ["<=", start, toIso];
  if (!layer.temporal.end) return ["all", started, [">=", start, fromIso]];
  const end = ["to-string", ["get", layer.temporal.end]];
  return ["all", started, ["any", ["!", ["has", layer.temporal.end]], [">=", end, fromIso]]];
}

function moment(ms) {
  return new Date(ms).toLocaleString(LOCALE, { timeZone: window.geoportal.config.timezone });
}

function formatValue(field, value) {
  if (value === undefined || value === null || value === "") return "—";
  if (field.type === "datetime") return moment(value);
  if (field.type === "boolean") return value === true || value === 1 || value === "true" ? T.yes : T.no;
  if (field.labels && field.labels[value]) return text(field.labels[value]);
  return String(value);
}

function escapeHtml(value) {
  const span = document.createElement("span");
  span.textContent = value;
  return span.innerHTML;
}

function popupHtml(layer, properties) {
  const rows = layer.fields
    .map((f) => `<tr><th>${escapeHtml(text(f.title))}</th><td>${escapeHtml(formatValue(f, properties[f.name]))}</td></tr>`)
    .join("");
  const div = document.createElement("div");
  div.innerHTML = `<h3>${escapeHtml(text(layer.title))}</h3><table>${rows}</table>`;
  return div;
}

function translatePage() {
  document.documentElement.lang = LANG;
  document.title = T.page;
  for (const element of document.querySelectorAll("[data-text]")) element.textContent = T[element.dataset.text];
  for (const element of document.querySelectorAll("[data-label]")) element.setAttribute("aria-label", T[element.dataset.label]);
  for (const element of document.querySelectorAll("[data-placeholder]")) element.placeholder = T[element.dataset.placeholder];
}

async function firstEvent(config, layer, datetime, sortby) {
  // The one feature of `layer` the features API puts first for this window and order (null: none).
  const params = new URLSearchParams({ datetime, limit: "1", skipGeometry: "true", f: "json" });
  if (sortby) params.set("sortby", sortby);
  const response = await fetch(`${config.collections}/${layer.id}/items?${params}`, { headers: { Accept: "application/geo+json" } });
  if (!response.ok) {
    // e.g. a temporal field the public may not sort by: that layer just does not steer the opening moment
    console.warn(`opening moment: ${response.status} from ${response.url}`);
    return null;
  }
  const page = await response.json();
  return page.features.length ? page.features[0].properties : null;
}

async function openingMoment(config, nowMs) {
  // "Now" if anything is active now; else the latest moment with events before it, else the next one after it.
  const temporal = config.layers.filter((l) => l.temporal);
  const now = iso(nowMs);
  const active = await Promise.all(temporal.map((l) => firstEvent(config, l, now)));
  if (!temporal.length || active.some(Boolean)) return { ms: nowMs, note: null };
  const ended = await Promise.all(temporal.filter((l) => l.temporal.end)
    .map((l) => firstEvent(config, l, `../${now}`, `-${l.temporal.end}`).then((p) => p && p[l.temporal.end])));
  const latest = Math.max(...ended.filter(Boolean).map(Date.parse));
  if (Number.isFinite(latest)) return { ms: latest, note: T.latest };
  const coming = await Promise.all(temporal
    .map((l) => firstEvent(config, l, `${now}/..`, l.temporal.start).then((p) => p && p[l.temporal.start])));
  const next = Math.min(...coming.filter(Boolean).map(Date.parse));
  return Number.isFinite(next) ? { ms: next, note: T.next } : { ms: nowMs, note: null };
}

const NARROW = window.matchMedia("(max-width: 600px)");

function setupSheet() {
  // On a phone the panel is a bottom sheet: folded at first so the map (and the city) fill the screen.
  const panel = document.getElementById("panel");
  const toggle = document.getElementById("sheet-toggle");
  const setOpen = (open) => {
    panel.classList.toggle("collapsed", !open);
    toggle.setAttribute("aria-expanded", String(open));
  };
  toggle.addEventListener("click", () => setOpen(panel.classList.contains("collapsed")));
  setOpen(!NARROW.matches);
  return setOpen;
}

function mapPadding() {
  // what of the map the sheet leaves visible on a phone; a margin on a desktop
  const sheet = NARROW.matches ? document.getElementById("panel").offsetHeight : 0;
  return { top: 20, left: 20, right: 20, bottom: 20 + sheet };
}

async function start() {
  translatePage();
  const setSheetOpen = setupSheet();
  const config = await (await fetch("config.json")).json();
  const layersById = Object.fromEntries(config.layers.map((l) => [l.id, l]));
  document.getElementById("city-title").textContent = text(config.title);
  document.title = `${text(config.title)} — ${T.portal}`;

  const map = new maplibregl.Map({ container: "map", style: config.style, bounds: config.bounds,
                                   fitBoundsOptions: { padding: mapPadding() }, attributionControl: { compact: true } });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  const api = { map, config, time: null, language: LANG, opening: null };
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

  const note = document.getElementById("time-note");
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
    label.textContent = api.time === null ? T.allEvents
      : fromMs === toMs ? moment(fromMs)
      : `${new Date(fromMs).toLocaleDateString(LOCALE)} – ${new Date(toMs).toLocaleDateString(LOCALE)}`;
    // the note belongs to the opening moment only: any other choice of time hides it
    note.hidden = !(api.opening && api.opening.note && fromMs === api.opening.ms && toMs === api.opening.ms);
  }

  // layer list grouped by domain, the legend beside
  const list = document.getElementById("layers");
  const legend = document.getElementById("legend");
  for (const domain of config.domains) {
    const members = config.layers.filter((l) => l.domain === domain.id);
    if (!members.length) continue;
    list.insertAdjacentHTML("beforeend", `<h2>${escapeHtml(text(domain.title))}</h2>`);
    for (const layer of members) {
      const title = escapeHtml(text(layer.title));
      const row = document.createElement("label");
      row.className = "layer";
      row.innerHTML = `<input type="checkbox" data-layer="${layer.id}" ${layer.visible ? "checked" : ""}>` +
        `<span class="swatch" style="background:${layer.legend[0].color}"></span>${title}`;
      row.querySelector("input").addEventListener("change", (e) => setVisible(layer.id, e.target.checked));
      list.appendChild(row);
      setVisible(layer.id, layer.visible);
      legend.insertAdjacentHTML("beforeend", `<h2>${title}</h2>` + layer.legend.map((entry) =>
        `<div class="legend-entry"><span class="swatch ${entry.dashed ? "dashed" : ""}" style="background-color:${entry.color}"></span>` +
        `${escapeHtml(text(entry.label) || entry.value || text(layer.title))}</div>`).join(""));
    }
  }
  if (config.raster) {
    list.insertAdjacentHTML("beforeend", `<h2>${T.analytics}</h2><label class="layer"><input type="checkbox" data-layer="${config.raster.id}">` +
      `<span class="swatch" style="background:linear-gradient(90deg,#fde68a,#dc2626)"></span>${escapeHtml(text(config.raster.title))}</label>`);
    list.querySelector(`[data-layer="${config.raster.id}"]`).addEventListener("change", (e) => setVisible(config.raster.id, e.target.checked));
  }

  // the time slider: hours between the earliest and the latest event, opening at "now" if anything is active
  // then, else at the nearest moment with events (and a note saying so)
  const slider = document.getElementById("time-slider");
  const min = Date.parse(config.time.min), max = Date.parse(config.time.max);
  const now = Math.min(Math.max(Date.parse(config.time.now), min), max);
  api.opening = await openingMoment(config, now);
  const opening = api.opening.ms;
  if (api.opening.note) note.textContent = `${api.opening.note}: ${moment(opening)}`;
  slider.min = min / 1000; slider.max = max / 1000; slider.value = opening / 1000;
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
  applyTime(opening, opening);

  // popups: the layer's public fields with their titles
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
  setupSearch(map, api, layersById, setSheetOpen);
  api.ready = true;
  document.body.dataset.ready = "true";
}

function timeWindow(event) {
  const end = event.end ? moment(Date.parse(event.end)) : T.openEnd;
  return `${moment(Date.parse(event.start))} – ${end}`;
}

function resultHtml(answer, layersById) {
  // The /affects answer in the panel: the building, events by domain with their windows, the zones' people.
  if (!answer.matched) {
    const candidates = answer.candidates.map((c) =>
      `<button type="button" class="candidate" data-address="${escapeHtml(c.address)}">${escapeHtml(c.address)}</button>`).join("");
    return `<h3 id="search-miss">${T.noMatch}</h3>${candidates ? `<p>${T.didYouMean}</p>${candidates}` : ""}`;
  }
  const parts = [`<h3 id="search-building">${escapeHtml(answer.building ? answer.building.properties.address : "")}</h3>`];
  if (answer.unavailable && answer.unavailable.length) {
    const titles = answer.unavailable.map((id) => (layersById[id] ? text(layersById[id].title) : id));
    parts.push(`<p class="unavailable">${T.unavailable}: ${escapeHtml(titles.join(", "))}</p>`);
  }
  if (!answer.domains.length) parts.push(`<p>${T.nothingNear}</p>`);
  for (const domain of answer.domains) {
    parts.push(`<h4>${escapeHtml(domain.title)}</h4><ul>` + domain.events.map((e) =>
      `<li class="affecting" data-layer="${escapeHtml(e.layer)}" data-id="${escapeHtml(e.id)}">` +
      `<span class="state ${e.state}">${T[e.state]}</span> ${escapeHtml(e.layer_title)}: ${escapeHtml(timeWindow(e))}, ` +
      `${e.covers ? T.here : `${Math.round(e.distance_m)} ${T.metres}`}</li>`).join("") + "</ul>");
  }
  if (answer.zones.length) {
    parts.push(`<h4>${T.whoAnswers}</h4>`);
    for (const zone of answer.zones) {
      const layer = layersById[zone.layer];
      const rows = (layer ? layer.fields : []).filter((f) => zone.properties[f.name] !== undefined && zone.properties[f.name] !== null)
        .map((f) => `<tr><th>${escapeHtml(text(f.title))}</th><td>${escapeHtml(formatValue(f, zone.properties[f.name]))}</td></tr>`);
      parts.push(`<div class="zone" data-layer="${escapeHtml(zone.layer)}"><strong>${escapeHtml(zone.layer_title)}</strong>` +
        `<table>${rows.join("")}</table></div>`);
    }
  }
  return parts.join("");
}

function setupSearch(map, api, layersById, setSheetOpen) {
  // The address search box: asks /affects at the moment the map shows, lists the answer, highlights it on the map.
  map.addSource("affects", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "affects-event-lines", type: "line", source: "affects", filter: ["all", ["==", ["get", "kind"], "event"],
    ["!=", ["geometry-type"], "Point"]], paint: { "line-color": "#f43f5e", "line-width": 8, "line-opacity": 0.55 } });
  map.addLayer({ id: "affects-event-points", type: "circle", source: "affects", filter: ["all", ["==", ["get", "kind"], "event"],
    ["==", ["geometry-type"], "Point"]], paint: { "circle-radius": 11, "circle-color": "rgba(0,0,0,0)",
    "circle-stroke-color": "#f43f5e", "circle-stroke-width": 3 } });
  map.addLayer({ id: "affects-building", type: "circle", source: "affects", filter: ["==", ["get", "kind"], "building"],
    paint: { "circle-radius": 9, "circle-color": "#111827", "circle-stroke-color": "#fde047", "circle-stroke-width": 4 } });
  const form = document.getElementById("search");
  const input = document.getElementById("search-input");
  const result = document.getElementById("search-result");

  async function search(address) {
    document.body.dataset.search = "pending";
    const params = new URLSearchParams({ address, f: "json", lang: LANG });
    if (api.time) params.set("at", api.time.from);
    const response = await fetch(new URL(`../affects?${params}`, window.location.href), { headers: { Accept: "application/json" } });
    const answer = await response.json();
    api.answer = answer;
    result.hidden = false;
    if (!response.ok) {
      result.textContent = answer.description;
      document.body.dataset.search = "error";
      return answer;
    }
    result.innerHTML = resultHtml(answer, layersById);
    for (const button of result.querySelectorAll("button.candidate")) {
      button.addEventListener("click", () => { input.value = button.dataset.address; search(button.dataset.address); });
    }
    const features = answer.domains.flatMap((d) => d.events).map((e) =>
      ({ type: "Feature", geometry: e.geometry, properties: { kind: "event", layer: e.layer, id: e.id } }));
    if (answer.building) features.push({ ...answer.building, properties: { kind: "building" } });
    map.getSource("affects").setData({ type: "FeatureCollection", features });
    if (answer.building) {
      if (NARROW.matches) setSheetOpen(true);
      map.jumpTo({ center: answer.building.geometry.coordinates, zoom: 16, padding: mapPadding() });
    }
    document.body.dataset.search = answer.matched ? "found" : "candidates";
    return answer;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (input.value.trim()) search(input.value.trim()).catch((error) => { console.error(error); document.body.dataset.search = "error"; });
  });
  api.search = search;
}

start().catch((error) => {
  console.error(error);
  document.body.dataset.error = String(error);
});
