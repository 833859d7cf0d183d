// Show every <time datetime="…Z"> in the viewer's own time zone; the HTML keeps UTC. Mark cameras online or
// offline from their last-seen time now (the page itself is rendered when clips arrive, not every minute).
for (const el of document.querySelectorAll("time[datetime]")) {
  const d = new Date(el.getAttribute("datetime"));
  if (!isNaN(d)) { el.textContent = d.toLocaleString(); el.title = el.getAttribute("datetime"); }
}
for (const el of document.querySelectorAll("[data-last-seen]")) {
  const seen = Date.parse(el.dataset.lastSeen);
  const online = !isNaN(seen) && (Date.now() - seen) / 1000 < Number(el.dataset.offlineAfter || 660);
  el.textContent = online ? "online" : "offline";
  el.classList.add(online ? "online" : "offline");
}
