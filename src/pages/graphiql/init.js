// Starts GraphiQL against this service and lets a developer set the bearer
// token without editing JSON by hand.
(function () {
  var defaultQuery = [
    '# Every operation needs an access token: paste it above and press "Use token",',
    '# or write {"Authorization": "Bearer <token>"} in the Headers tab below.',
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
  render('{\n  "Authorization": "Bearer <paste your access token>"\n}');
  document.getElementById('token-form').addEventListener('submit', function (event) {
    event.preventDefault();
    var token = document.getElementById('token').value.trim();
    render(JSON.stringify({ Authorization: 'Bearer ' + token }, null, 2));
  });
})();
