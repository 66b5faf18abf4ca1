DROP TABLE IF EXISTS quotes;
DROP FUNCTION IF EXISTS quotes_on_published_version();
DROP TABLE IF EXISTS rating_test_cases;
DROP TABLE IF EXISTS product_version_rules;
DROP FUNCTION IF EXISTS product_version_children_guard();
DROP TABLE IF EXISTS product_versions;
DROP FUNCTION IF EXISTS product_versions_guard();
DROP TABLE IF EXISTS products;
