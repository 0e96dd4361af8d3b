// A small, local renderer of /openapi.json: routes, parameters, bodies and schemas.
"use strict";

(async function () {
  const root = document.getElementById("api");
  const spec = await mm.api("/openapi.json");
  const schemas = (spec.components && spec.components.schemas) || {};
  const refName = (ref) => ref.split("/").pop();

  function typeOf(schema) {
    if (!schema) return "";
    if (schema.$ref) return refName(schema.$ref);
    if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
    if (schema.type === "array") return `${typeOf(schema.items)}[]`;
    if (schema.type === "object" && schema.additionalProperties) return `{string: ${typeOf(schema.additionalProperties)}}`;
    if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
    return schema.type || (schema.format ? schema.format : "any");
  }

  function fieldTable(props, required) {
    const body = Object.entries(props || {}).map(([name, s]) => mm.el("tr", {},
      mm.el("td", {}, mm.el("code", { text: name }), (required || []).includes(name) ? " *" : ""),
      mm.el("td", { text: typeOf(s) }),
      mm.el("td", { class: "muted", text: s.description || (s.default !== undefined ? `default ${JSON.stringify(s.default)}` : "") })));
    return mm.el("table", { class: "table" }, mm.el("tbody", {}, body));
  }

  const list = [];
  for (const [path, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      const parts = [mm.el("h3", {}, mm.el("span", { class: `method ${method}`, text: method.toUpperCase() }), " ", mm.el("code", { text: path })),
        mm.el("p", { text: op.summary || "" })];
      if (op.parameters && op.parameters.length) {
        const props = {};
        const req = [];
        for (const p of op.parameters) { props[`${p.name} (${p.in})`] = p.schema || {}; if (p.required) req.push(`${p.name} (${p.in})`); }
        parts.push(fieldTable(props, req));
      }
      if (op.requestBody) {
        for (const [type, content] of Object.entries(op.requestBody.content || {})) {
          parts.push(mm.el("p", { class: "muted", text: `body: ${type} ${typeOf(content.schema)}` }));
        }
      }
      list.push(mm.el("section", { class: "endpoint" }, parts));
    }
  }
  const models = Object.entries(schemas).map(([name, s]) => mm.el("section", { class: "endpoint", id: name },
    mm.el("h3", { text: name }), mm.el("p", { class: "muted", text: s.description || "" }), fieldTable(s.properties, s.required)));
  root.replaceChildren(...list, mm.el("h2", { text: "Schemas" }), ...models);
})();
