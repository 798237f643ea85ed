DROP TABLE unwritten_package_files;
