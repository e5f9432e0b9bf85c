// Starts Swagger UI on Ferry's /docs page. It is a file of its own, not an
// inline script, so that the page's Content-Security-Policy can allow
// scripts from 'self' only. The page passes the OpenAPI document's URL in
// this script element's data-url attribute.
(function () {
  "use strict";
  var url = document.currentScript.dataset.url;
  window.ui = SwaggerUIBundle({
    url: url,
    dom_id: "#swagger-ui",
    deepLinking: true,
    // The online validator badge would load an image from
    // validator.swagger.io; the docs reach no host but this one.
    validatorUrl: null,
    // Tokens stay in the page's memory, not in localStorage.
    persistAuthorization: false,
  });
})();
