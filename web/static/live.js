// Near-live view: poll the device's newest clip and play each new one as it arrives (clip length + ingest
// behind real time). Everything comes from this origin.
(function () {
  const video = document.getElementById("video");
  const device = video && video.dataset.liveDevice;
  if (!device) return;
  const label = document.getElementById("now-playing");
  let current = null;
  let hls = null;
  function play(clip) {
    const q = "?key=" + encodeURIComponent(clip.key);
    current = clip.key;
    video.dataset.key = clip.key;
    label.textContent = new Date(clip.captured_at).toLocaleString();
    if (hls) { hls.destroy(); hls = null; }
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: false });
      hls.loadSource("/media/clip.m3u8" + q);
      hls.attachMedia(video);
    } else {
      video.src = "/media/clip.m3u8" + q;
    }
    video.play().catch(() => {});
  }
  async function poll() {
    try {
      const r = await fetch("/media/latest.json?device=" + encodeURIComponent(device), { credentials: "same-origin" });
      if (r.ok) {
        const doc = await r.json();
        if (doc.clip && doc.clip.key !== current) play(doc.clip);
      }
    } catch (e) { /* the next poll tries again */ }
    setTimeout(poll, 2000);
  }
  poll();
})();
