// Draw the ```mermaid blocks of the docs as diagrams.
// pymdownx.superfences writes them as <pre class="mermaid"><code>...</code></pre>,
// which stays readable as text when mermaid.js cannot be loaded (offline).
document.addEventListener("DOMContentLoaded", () => {
  if (typeof mermaid === "undefined") {
    return;
  }
  for (const block of document.querySelectorAll("pre.mermaid")) {
    const diagram = document.createElement("div");
    diagram.className = "mermaid";
    diagram.textContent = block.textContent;
    block.replaceWith(diagram);
  }
  mermaid.initialize({ startOnLoad: false });
  mermaid.run({ querySelector: "div.mermaid" });
});
