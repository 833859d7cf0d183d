// Show every <time datetime="…Z"> in the viewer's own time zone; the HTML keeps UTC. data-fmt="time" shows the
// time of day only, "hm" hours and minutes. Mark cameras online or offline from their last-seen time now (the
// page itself is rendered when clips arrive, not every minute).
(function () {
  const formats = {
    time: { hour: "2-digit", minute: "2-digit", second: "2-digit" },
    hm: { hour: "2-digit", minute: "2-digit" },
    hh: { hour: "2-digit", hourCycle: "h23" },   // timeline labels; hh:mm where the zone is off the full hour
  };
  for (const el of document.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) continue;
    const fmt = formats[el.dataset.fmt === "hh" && d.getMinutes() !== 0 ? "hm" : el.dataset.fmt];
    el.textContent = fmt ? d.toLocaleTimeString([], fmt) : d.toLocaleString();
    el.title = el.getAttribute("datetime");
  }
  for (const el of document.querySelectorAll("[data-last-seen]")) {
    const seen = Date.parse(el.dataset.lastSeen);
    const online = !isNaN(seen) && (Date.now() - seen) / 1000 < Number(el.dataset.offlineAfter || 660);
    el.textContent = online ? "online" : "offline";
    el.classList.add(online ? "online" : "offline");
  }
})();
