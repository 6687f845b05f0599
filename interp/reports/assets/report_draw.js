(function (root) {
  var errs = window.__interpErrors || [], status = root.querySelector('#interp-status');
  var divs = Array.prototype.slice.call(root.querySelectorAll('div.interp-plot')), jobs = [];
  if (divs.length && typeof Plotly === 'undefined') errs.push('plotly.js did not load');
  divs.forEach(function (div) {
    try {
      var spec = JSON.parse(document.getElementById(div.id + '-data').textContent);
      jobs.push(Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false}));
    } catch (e) { errs.push(div.id + ': ' + e.message); }
  });
  function finish() {
    if (!status) return;  // a notebook fragment has no status line
    var drawn = divs.filter(function (d) { return d.querySelector('svg.main-svg'); }).length;
    status.setAttribute('data-figures', divs.length);
    status.setAttribute('data-drawn', drawn);
    status.setAttribute('data-errors', errs.length);
    status.setAttribute('data-state', errs.length ? 'error' : (drawn === divs.length ? 'ok' : 'incomplete'));
    status.textContent = drawn + ' of ' + divs.length + ' figures drawn' +
      (errs.length ? '; script errors: ' + errs.join(' | ') : '; no script errors') + '.';
  }
  Promise.all(jobs).then(finish, function (e) { errs.push(String(e)); finish(); });
})(%s);