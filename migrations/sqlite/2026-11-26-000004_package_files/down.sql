DROP TABLE package_file_progress;
