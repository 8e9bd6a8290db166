"""The support console: the admin's home page as a fleet dashboard, one search box, and the reads behind
them and the site page. Server-rendered; small fragments are refreshed by fleet/static/console/console.js."""
