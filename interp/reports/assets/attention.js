(function () {
  var root = document.getElementById('%(id)s');
  var D = JSON.parse(document.getElementById('%(id)s-data').textContent);
  var T = D.tokens.length, selL = root.querySelector('select.layer'), selH = root.querySelector('select.head');
  var grid = root.querySelector('table.grid'), out = root.querySelector('.strip.out'), inn = root.querySelector('.strip.in');
  var info = root.querySelector('.info');
  function esc(s) { var d = document.createElement('span'); d.textContent = s; return d.innerHTML; }
  function shade(w) { var c = Math.round(255 - 215 * w), g = Math.round(255 - 150 * w);
    return 'rgb(' + c + ',' + g + ',255)'; }
  function A() { return D.patterns[selL.selectedIndex][selH.selectedIndex]; }
  function strip(el, label) {
    var h = '<span class="lab">' + label + '</span>';
    for (var i = 0; i < T; i++) h += '<span class="t" data-i="' + i + '">' + esc(D.tokens[i]) + '</span>';
    el.innerHTML = h;
  }
  function drawGrid() {
    var a = A(), h = '<tr><th></th>';
    for (var k = 0; k < T; k++) h += '<th class="k">' + esc(D.tokens[k]) + '</th>';
    h += '</tr>';
    for (var q = 0; q < T; q++) {
      h += '<tr><th>' + esc(D.tokens[q]) + '</th>';
      for (var k = 0; k < T; k++) h += '<td data-q="' + q + '" data-k="' + k + '" style="background:' + shade(a[q][k]) +
        '" title="' + esc(D.tokens[q]) + ' [' + q + '] -> ' + esc(D.tokens[k]) + ' [' + k + ']: ' + a[q][k].toFixed(3) + '"></td>';
      h += '</tr>';
    }
    grid.innerHTML = h;
  }
  function focus(i) {
    var a = A(), o = out.querySelectorAll('.t'), n = inn.querySelectorAll('.t');
    for (var j = 0; j < T; j++) {
      o[j].style.background = shade(a[i][j]); o[j].title = 'token ' + i + ' attends to ' + j + ': ' + a[i][j].toFixed(3);
      n[j].style.background = shade(a[j][i]); n[j].title = 'token ' + j + ' attends to ' + i + ': ' + a[j][i].toFixed(3);
      o[j].classList.toggle('sel', j === i); n[j].classList.toggle('sel', j === i);
    }
    info.textContent = 'token ' + i + ' ' + JSON.stringify(D.tokens[i]) + ' (layer ' + D.layers[selL.selectedIndex] +
      ', head ' + selH.selectedIndex + ')';
    root.setAttribute('data-focus', i);
  }
  function hover(e) { var t = e.target, i = t.getAttribute('data-i');
    if (i === null) i = t.getAttribute('data-q'); if (i !== null) focus(parseInt(i, 10)); }
  strip(out, 'attends to (row):'); strip(inn, 'attended from (column):');
  out.addEventListener('mouseover', hover); inn.addEventListener('mouseover', hover); grid.addEventListener('mouseover', hover);
  function redraw() { drawGrid(); focus(parseInt(root.getAttribute('data-focus') || (T - 1), 10)); }
  selL.addEventListener('change', redraw); selH.addEventListener('change', redraw);
  redraw();
  root.setAttribute('data-ready', '1');
})();