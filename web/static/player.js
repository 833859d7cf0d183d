// Plays a clip in the day page: hls.js over the byte-range playlist where MSE exists, native HLS on Safari,
// and the progressive MP4 (HTTP Range) otherwise. Everything comes from this origin.
(function () {
  const video = document.getElementById("video");
  const panel = document.getElementById("player");
  if (!video || !panel) return;
  let hls = null;
  function play(key, label) {
    const q = "?key=" + encodeURIComponent(key);
    panel.hidden = false;
    document.getElementById("now-playing").textContent = label;
    document.getElementById("download").href = "/media/clip.mp4" + q + "&download=1";
    if (hls) { hls.destroy(); hls = null; }
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls({ enableWorker: false });
      hls.loadSource("/media/clip.m3u8" + q);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = "/media/clip.m3u8" + q;
    } else {
      video.src = "/media/clip.mp4" + q;
    }
    video.play().catch(() => {});
  }
  for (const link of document.querySelectorAll("a.play")) {
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      play(link.dataset.key, link.textContent);
    });
  }
})();
