window.__interpErrors = [];
window.addEventListener('error', function (e) { window.__interpErrors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__interpErrors.push('unhandled rejection: ' + String(e.reason)); });