// The usage dashboard's charts. The numbers come from the page (json_script "usage-data");
// every chart has the same numbers in a table beneath it, so nothing here is the only copy.
(function () {
  "use strict";

  const source = document.getElementById("usage-data");
  if (!source || typeof window.Chart === "undefined") return;
  const data = JSON.parse(source.textContent);
  const Chart = window.Chart;

  const css = getComputedStyle(document.documentElement);
  const cssVar = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const ink = cssVar("--usage-ink", "#1f2328");
  const muted = cssVar("--usage-muted", "#59636e");
  const grid = cssVar("--usage-grid", "rgba(0, 0, 0, 0.08)");
  // Distinguishable, colour-blind friendly (Okabe–Ito), in model order.
  const palette = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
  const colour = (i) => palette[i % palette.length];

  const numbers = new Intl.NumberFormat();
  const reduceMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  Chart.defaults.color = muted;
  Chart.defaults.borderColor = grid;
  Chart.defaults.font.family = cssVar("--usage-font", "system-ui, sans-serif");
  Chart.defaults.animation = reduceMotion ? false : { duration: 300 };
  Chart.defaults.plugins.legend.labels.boxWidth = 12;
  Chart.defaults.plugins.legend.labels.color = ink;
  Chart.defaults.plugins.tooltip.callbacks.label = (item) =>
    `${item.dataset.label}: ${numbers.format(item.raw)}`;

  const countAxis = { beginAtZero: true, ticks: { precision: 0, callback: (v) => numbers.format(v) } };

  function dayLabel(iso) {
    const d = new Date(iso + "T00:00:00Z");
    return d.toLocaleDateString(undefined, { day: "numeric", month: "short", timeZone: "UTC" });
  }

  function drawDaily() {
    const canvas = document.getElementById("chart-daily");
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.days.map(dayLabel),
        datasets: data.models.map((m, i) => ({
          label: m.name,
          data: data.messages[m.slug],
          backgroundColor: colour(i),
          stack: "messages",
        })),
      },
      options: {
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: { x: { stacked: true, grid: { display: false } }, y: { ...countAxis, stacked: true } },
        plugins: {
          tooltip: {
            callbacks: {
              title: (items) => items.length ? data.days[items[0].dataIndex] + " (UTC)" : "",
              footer: (items) => "Total: " + numbers.format(items.reduce((sum, item) => sum + item.raw, 0)),
            },
          },
        },
      },
    });
  }

  const money = new Intl.NumberFormat(undefined, { style: "currency", currency: "USD" });

  function drawSpend() {
    const canvas = document.getElementById("chart-spend");
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.days.map(dayLabel),
        datasets: data.models.map((m, i) => ({
          label: m.name,
          data: data.spend[m.slug],
          backgroundColor: colour(i),
          stack: "spend",
        })),
      },
      options: {
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, ticks: { callback: (v) => money.format(v) } },
        },
        plugins: {
          tooltip: {
            callbacks: {
              title: (items) => items.length ? data.days[items[0].dataIndex] + " (UTC)" : "",
              label: (item) => `${item.dataset.label}: ${money.format(item.raw)}`,
              footer: (items) => "Total: " + money.format(items.reduce((sum, item) => sum + item.raw, 0)),
            },
          },
        },
      },
    });
  }

  function drawTokens() {
    const canvas = document.getElementById("chart-tokens");
    if (!canvas) return;
    const rows = data.tokens;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: rows.map((t) => t.name),
        datasets: [
          { label: "Prompt", data: rows.map((t) => t.prompt_tokens), backgroundColor: "#56B4E9", stack: "in" },
          {
            label: "Completion (visible)",
            data: rows.map((t) => t.completion_tokens - t.reasoning_tokens),
            backgroundColor: "#0072B2",
            stack: "out",
          },
          { label: "Reasoning", data: rows.map((t) => t.reasoning_tokens), backgroundColor: "#E69F00", stack: "out" },
        ],
      },
      options: {
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false } },
          y: { stacked: true, beginAtZero: true, ticks: { callback: (v) => compact(v) } },
        },
      },
    });
  }

  function compact(value) {
    return new Intl.NumberFormat(undefined, { notation: "compact" }).format(value);
  }

  function drawTopUsers() {
    const canvas = document.getElementById("chart-top");
    if (!canvas) return;
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: data.top_users.map((u) => u.username),
        datasets: [{ label: "Messages", data: data.top_users.map((u) => u.messages), backgroundColor: "#009E73" }],
      },
      options: {
        indexAxis: "y",
        maintainAspectRatio: false,
        scales: { x: countAxis, y: { grid: { display: false } } },
        plugins: { legend: { display: false } },
      },
    });
  }

  drawDaily();
  drawSpend();
  drawTokens();
  drawTopUsers();
})();
