// Starts GraphiQL against this service and lets a developer set the bearer
// token without editing JSON by hand: pasted, or fetched from /oauth/token
// with a client id and secret. The schema loads without a token.
(function () {
  var defaultQuery = [
    '# Every operation needs an access token: type the client id and secret above',
    '# and press "Get token", or paste a token and press "Use token".',
    '{',
    '  verifyUsername(username: "081234567890") {',
    '    username',
    '    exists',
    '  }',
    '}',
    ''
  ].join('\n');
  var fetcher = GraphiQL.createFetcher({ url: '/graphql' });
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  function render(headers) {
    root.render(React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      headers: headers,
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: false
    }));
  }
  function useToken(token) {
    render(JSON.stringify({ Authorization: 'Bearer ' + token }, null, 2));
  }
  render('{}');
  document.getElementById('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    useToken(document.getElementById('token').value.trim());
  });
  var status = document.getElementById('token-status');
  document.getElementById('client-form').addEventListener('submit', function (event) {
    event.preventDefault();
    status.textContent = 'Asking for a token…';
    fetch('/oauth/token', {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'client_credentials',
        client_id: document.getElementById('client-id').value.trim(),
        client_secret: document.getElementById('client-secret').value
      })
    }).then(function (response) {
      return response.json().then(function (body) { return { ok: response.ok, body: body }; });
    }).then(function (result) {
      if (!result.ok || !result.body.access_token) {
        status.textContent = 'No token: ' + (result.body.error_description || result.body.message || 'the server refused');
        return;
      }
      document.getElementById('token').value = result.body.access_token;
      useToken(result.body.access_token);
      status.textContent = 'Token set; it expires in ' + result.body.expires_in + ' s.';
    }).catch(function (error) {
      status.textContent = 'No token: ' + error;
    });
  });
})();
