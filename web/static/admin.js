// The admin section's one bit of script: "Copy" buttons for the agent config shown once after creating a
// device or rotating its secret. The Clipboard API needs a secure context (https or localhost); on a plain
// LAN address the text is selected and copied with the older command instead.
(function () {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      const status = button.parentElement.querySelector(".copy-status");
      let copied = false;
      try {
        if (navigator.clipboard && window.isSecureContext) {
          await navigator.clipboard.writeText(source.value);
          copied = true;
        }
      } catch (err) {
        copied = false;
      }
      if (!copied) {
        source.focus();
        source.select();
        copied = document.execCommand && document.execCommand("copy");
      }
      if (status) status.textContent = copied ? "Copied." : "Select the text and copy it by hand.";
    });
  }
})();
